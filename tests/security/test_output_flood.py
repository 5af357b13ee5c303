"""Issue 8 item 5 (output floods) and item 13 (forged log records).

An actor owns every byte it writes to stdout and stderr; the host turns those
bytes into log records under ``pyisolate.actor.<name>``. These tests play a
flooding or forging actor and assert the host stays responsive, its memory
bounded, and every record it logs well-formed; each has a positive control
(ordinary output still arrives, with its level and text).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

import anyio
import pytest
from conftest import eventually

import pyisolate
from pyisolate import ActorStartError
from pyisolate.actors._output import BURST, MAX_LINE, MAX_NAME, LineSplitter, RateLimit
from security.output_actors import DiesLoudly, Noisy

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio

STALL_BOUND = 0.25  # seconds: generous, so that a loaded machine cannot flake it


class _Records(logging.Handler):
    """Every record logged under one actor's logger."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(f"pyisolate.actor.{name}")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> _Records:
        self._old_level = self._logger.level
        self._logger.setLevel(logging.DEBUG)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._old_level)

    def messages(self, where: Callable[[str], bool] = lambda m: True) -> list[str]:
        return [m for r in self.records if where(m := r.getMessage())]

    def dropped(self) -> int:
        """The lines the "dropped (rate limit)" notes account for."""
        total = 0
        for m in self.messages(lambda m: m.startswith("pyisolate: ")):
            count, _, rest = m.removeprefix("pyisolate: ").partition(" ")
            assert rest.endswith("dropped (rate limit)"), m
            total += int(count)
        return total


async def _ticker(gaps: list[float], stop: anyio.Event) -> None:
    """Records how late each 5 ms sleep of the host's loop wakes up."""
    while not stop.is_set():
        start = time.perf_counter()
        await anyio.sleep(0.005)
        gaps.append(time.perf_counter() - start - 0.005)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- the host's loop during a flood ------------------------------------------------


async def test_stderr_line_flood_stalls_neither_host_nor_neighbour(rt: pyisolate.Runtime) -> None:
    flooder = await rt.spawn(Noisy, name="flooder")
    neighbour = await rt.spawn(Noisy, name="neighbour")
    assert await neighbour.ping() == "pong"
    gaps: list[float] = []
    latencies: list[float] = []
    stop = anyio.Event()

    async def neighbour_calls() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            assert await neighbour.ping(timeout=10) == "pong"
            latencies.append(time.perf_counter() - start)
            await anyio.sleep(0.01)

    with _Records("flooder") as seen:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_ticker, gaps, stop)
            tg.start_soon(neighbour_calls)
            written = await flooder.flood_lines(2.0, timeout=30)
            stop.set()
        assert written > 10 * BURST  # it did flood, far past the rate limit
        assert max(gaps) < STALL_BOUND, f"host loop stalled {max(gaps) * 1000:.0f} ms"
        assert len(latencies) >= 10, latencies  # the neighbour kept answering...
        assert max(latencies) < 1.0, max(latencies)  # ...promptly
        # Every line the flooder wrote is logged or counted as dropped.
        flood = lambda: len(seen.messages(lambda m: m.startswith("flood ")))  # noqa: E731
        await eventually(lambda: flood() + seen.dropped() == written)
    await flooder.stop()
    await neighbour.stop()


@pytest.mark.parametrize("template", [False, True], ids=["cold", "forked"])
async def test_rate_limit_drops_with_counted_note(rt: pyisolate.Runtime, template: bool) -> None:
    ref = await rt.spawn(Noisy, name="counted", options=pyisolate.SpawnOptions(template=template))
    with _Records("counted") as seen:
        await ref.write_lines(3 * BURST)
        lines = lambda: seen.messages(lambda m: m.startswith("line "))  # noqa: E731
        await eventually(lambda: seen.dropped() and len(lines()) + seen.dropped() == 3 * BURST)
        # The burst itself passed, in order.
        assert lines()[:BURST] == [f"line {i}" for i in range(BURST)]
        notes = seen.messages(lambda m: m.startswith("pyisolate: "))
        assert all(m.endswith(" lines from actor 'counted' dropped (rate limit)") for m in notes)
        note = next(r for r in seen.records if r.getMessage().startswith("pyisolate: "))
        assert note.levelno == logging.WARNING
    await ref.stop()


async def test_output_within_the_burst_is_all_logged(rt: pyisolate.Runtime) -> None:
    """Positive control: an actor below the limit loses nothing and gets no note."""
    ref = await rt.spawn(Noisy, name="calm")
    with _Records("calm") as seen:
        await ref.write_lines(BURST // 2, "stdout")
        await eventually(lambda: len(seen.records) >= BURST // 2)
        await anyio.sleep(0.2)
        assert seen.messages() == [f"line {i}" for i in range(BURST // 2)]
        assert {r.levelno for r in seen.records} == {logging.INFO}
    await ref.stop()


# -- lines without an end ----------------------------------------------------------


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_output_without_newline_is_linear_and_bounded(
    rt: pyisolate.Runtime, stream: str
) -> None:
    ref = await rt.spawn(Noisy, name="oneline")
    nbytes = 64 << 20
    peak = [_rss()]
    stop = anyio.Event()

    async def sample() -> None:
        while not stop.is_set():
            peak.append(_rss())
            await anyio.sleep(0.005)

    with _Records("oneline") as seen:
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            await ref.no_newline(nbytes, stream, timeout=30)
            cut = await eventually(lambda: seen.messages(lambda m: "bytes cut]" in m), timeout=10)
            stop.set()
        assert time.monotonic() - start < 8.0  # was 46 s: quadratic
        assert max(peak) - peak[0] < nbytes // 2  # the host never held the line
        [line] = cut
        assert line == "x" * MAX_LINE + f" [... {nbytes - MAX_LINE} bytes cut]"
    await ref.stop()


async def test_line_at_the_cap_arrives_whole(rt: pyisolate.Runtime) -> None:
    """Positive control: the cap cuts only what exceeds it."""
    ref = await rt.spawn(Noisy, name="longline")
    with _Records("longline") as seen:
        await ref.no_newline(MAX_LINE)
        [line] = await eventually(lambda: seen.messages(lambda m: m.startswith("x")))
        assert line == "x" * MAX_LINE
    await ref.stop()


async def test_carriage_return_progress_bar_is_one_line_per_state(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Noisy, name="bar")
    total = 50
    with _Records("bar") as seen:
        await ref.progress(total)
        bars = lambda: seen.messages(lambda m: "|" in m)  # noqa: E731
        await eventually(lambda: any(m.startswith(f"{total}/{total} ") for m in bars()))
        assert [m.split(" ")[0] for m in bars()] == [f"{i}/{total}" for i in range(1, total + 1)]
        assert all("\r" not in m and len(m) < 40 for m in seen.messages())
        assert "" not in seen.messages()  # nor an empty line before the bar
    await ref.stop()


# -- forged log records ------------------------------------------------------------


async def test_forged_records_are_clamped_or_plain(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Noisy, name="forger")
    nested = "[" * 30_000  # json.loads raises RecursionError: it used to kill the Runtime
    malformed = [
        '[Infinity, "forger", "inf level"]',  # int(inf) raised OverflowError in the host
        '["CRITICAL", "forger", "string level"]',
        '[true, "forger", "bool level"]',
        '[20.5, "forger", "float level"]',
        '[20, "forger"]',
        '[20, "forger", ["not", "a", "message"]]',
        nested,
    ]
    with _Records("forger") as seen:
        await ref.forge(
            [
                '[999999999999999999999, "forger", "huge level"]',
                '[-7, "forger", "negative level"]',
                '[25, "forger", "custom level"]',
                f'[20, "{"n" * 5000}", "long name"]',
                '[20, "evil\\nname\\u001b[2J", "control name"]',
                *malformed,
            ]
        )
        await eventually(lambda: len(seen.records) >= 5 + len(malformed))
        by_text = {r.getMessage(): r.levelno for r in seen.records}
        assert by_text["[forger] huge level"] == logging.CRITICAL
        assert by_text["[forger] negative level"] == logging.WARNING
        assert by_text["[forger] custom level"] == 25  # in range: kept
        assert by_text[f"[{'n' * MAX_NAME}] long name"] == logging.INFO
        assert by_text["[evil?name?[2J] control name"] == logging.INFO
        plain = [m for m in by_text if m.startswith("\x1bpyisolate-log ")]
        assert sorted(plain) == sorted(f"\x1bpyisolate-log {body}" for body in malformed)
        assert {by_text[m] for m in plain} == {logging.WARNING}  # stderr's level
        # The host survived all of it, and genuine records still arrive.
        await ref.talk("after")
        await eventually(lambda: "[plugin.inner] error says after" in seen.messages())
        record = next(r for r in seen.records if r.getMessage().endswith("error says after"))
        assert record.levelno == logging.ERROR
    await ref.stop()


async def test_ordinary_prints_and_records_arrive_with_level_and_text(
    rt: pyisolate.Runtime,
) -> None:
    """Positive control for the forgeries: genuine output, at its level."""
    ref = await rt.spawn(Noisy, name="plugin")
    with _Records("plugin") as seen:
        await ref.talk("hi")
        expected = {
            "stdout says hi": logging.INFO,
            "[plugin.inner] warning says hi": logging.WARNING,
            "[plugin.inner] error says hi": logging.ERROR,
        }
        await eventually(lambda: set(expected) <= set(seen.messages()))
        assert {r.getMessage(): r.levelno for r in seen.records} == expected
    await ref.stop()


async def test_long_record_stays_a_record_with_head_and_tail(rt: pyisolate.Runtime) -> None:
    """A record longer than the line cap is shortened by the actor, not cut into
    a plain line by the host: its level survives and so does its end."""
    ref = await rt.spawn(Noisy, name="verbose")
    with _Records("verbose") as seen:
        await ref.log_long(4 * MAX_LINE)
        [record] = await eventually(lambda: seen.records)
        message = record.getMessage()
        assert record.levelno == logging.WARNING
        assert message.startswith("[plugin.long] BEGINAAAA")
        assert message.endswith("AAAAEND")
        assert " characters cut] " in message
        assert len(message) <= MAX_LINE
    await ref.stop()


# -- the stderr tail of an actor that fails to start ------------------------------


async def test_start_error_shows_last_stderr_lines(rt: pyisolate.Runtime) -> None:
    with pytest.raises(ActorStartError, match="fatal: the last words"):
        await rt.spawn(DiesLoudly, 5)


async def test_start_error_shows_last_words_after_a_flood(rt: pyisolate.Runtime) -> None:
    """The tail keeps the last lines even when the rate limit dropped them."""
    with pytest.raises(ActorStartError, match="fatal: the last words") as info:
        await rt.spawn(DiesLoudly, 4 * BURST)
    assert f"noise {4 * BURST - 1}" in str(info.value)
    assert "noise 0\n" not in str(info.value)  # a tail, not the whole flood


# -- the pieces, on their own --------------------------------------------------------


def test_splitter_ends_lines_at_cr_lf_and_crlf_across_chunks() -> None:
    s = LineSplitter(limit=8)
    assert s.feed(b"a\nb\r\nc\r") == [b"a", b"b", b"c"]
    assert s.feed(b"\nd") == []  # the "\r\n" pair split across reads: one line end
    assert s.feed(b"\r\re\n") == [b"d", b"", b"e"]
    assert s.feed(b"0123456789abc") == []
    assert s.feed(b"def\n") == [b"01234567 [... 8 bytes cut]"]
    assert s.feed(b"tail") == []
    assert s.finish() == b"tail"


def test_rate_limit_is_a_token_bucket() -> None:
    now = [0.0]
    limit = RateLimit(burst=10, rate=5.0, clock=lambda: now[0])
    assert limit.take(8) == 8
    assert limit.take(8) == 2
    assert limit.limited()
    assert limit.dropped == 6
    assert limit.take_note() == 0  # not due yet: one note per interval
    now[0] += 1.0
    assert not limit.limited()
    assert limit.take(8) == 5
    assert limit.take_note() == 9
    assert limit.take_note(force=True) == 0
