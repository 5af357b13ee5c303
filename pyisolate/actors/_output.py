"""An actor's raw stdout and stderr turned into bounded log records.

The host reads each actor's two output pipes and re-emits what it reads
through its own ``logging``, under ``pyisolate.actor.<name>``. The actor
controls every byte of that output, so every cost on the host is bounded:

* **Lines.** A line ends at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (a progress
  bar such as tqdm's rewrites its line with ``\\r`` and never ends it; each
  rewrite becomes one line instead of one ever-growing one). Empty lines are
  skipped: they say nothing in a log, and every bar would start with one.
  Splitting is linear in the bytes read, whatever their shape.
* **Line length.** A line keeps at most :data:`MAX_LINE` bytes; the rest is
  counted, not kept, and the line is emitted with a ``[... N bytes cut]``
  marker when it ends. Output without any line end costs the host
  :data:`MAX_LINE` bytes of memory, not the size of the output.
* **Rate.** Lines pass a per-actor token bucket (both pipes share it): a
  burst of :data:`BURST` lines, then :data:`RATE` lines a second. The excess
  is dropped and counted; a warning ``pyisolate: N lines from actor 'x'
  dropped (rate limit)`` follows at most every :data:`NOTE_INTERVAL` seconds
  while lines are dropped, and once more when the flood ends or the pipe
  closes, so every line is either logged or counted.
* **The host's loop.** A pump reads at most :data:`CHUNK` bytes and logs at
  most :data:`EMIT_BATCH` records per loop turn, then yields (short reads
  count towards the bytes). While its actor is over its rate, it reads one chunk per
  token interval: the pipe fills and the flooding actor's own writes block,
  so a flood slows the actor that floods, not the host or its neighbours.
* **Forwarded records.** An actor's ``logging`` records arrive on stderr as
  ``LOG_PREFIX`` + JSON ``[levelno, name, message]`` (see
  :func:`encode_record`, used by the actor). The host accepts one only when
  it is exactly that shape with an ``int`` level: levels above CRITICAL
  become CRITICAL, levels below 1 become WARNING, the logger name is cut to
  :data:`MAX_NAME` characters with unprintable characters replaced. Anything
  else is logged as the plain stderr line it is.

The tail of stderr (:attr:`ActorOutput.tail`) keeps the last lines whether
or not the rate limit dropped them: it explains an actor that fails to start.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    import collections
    from collections.abc import Callable

#: Starts a line of an actor's stderr that carries a log record.
LOG_PREFIX = "\x1bpyisolate-log "

__all__ = [
    "BURST",
    "CHUNK",
    "MAX_LINE",
    "MAX_NAME",
    "NOTE_INTERVAL",
    "RATE",
    "ActorOutput",
    "LineSplitter",
    "RateLimit",
    "encode_record",
    "parse_record",
]

MAX_LINE = 32 * 1024
"""Bytes of one line kept (a forwarded record, JSON included, fits in it)."""
CHUNK = 16 * 1024
"""Bytes read per loop turn; at most :data:`MAX_LINE`, so a line inside one
chunk never needs cutting."""
BURST = 500
"""Lines an actor may emit at once before the rate limit applies."""
RATE = 200.0
"""Lines per second an actor may emit after its burst."""
EMIT_BATCH = 50
"""Records logged per loop turn (formatting and handlers cost the host's loop)."""
NOTE_INTERVAL = 1.0
"""Seconds between two "lines dropped" notes while an actor floods."""
MAX_NAME = 200
"""Characters of a forwarded record's logger name kept."""
TAIL_CHARS = 4096
"""Characters of one stderr line kept in the tail for start-up errors."""


def _cut_marker(count: int, unit: str) -> str:
    return f" [... {count} {unit} cut]"


class LineSplitter:
    """Cuts a byte stream into lines in linear time and bounded memory."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self._limit = limit
        self._partial = bytearray()  # the current line, at most ``limit`` bytes
        self._cut = 0  # bytes of the current line beyond ``limit``, dropped
        self._after_cr = False  # the last chunk ended with "\r": a "\n" next is its pair

    def feed(self, data: bytes) -> list[bytes]:
        """The lines that ``data`` completes, in order, empty ones included."""
        if self._after_cr and data[:1] == b"\n":
            data = data[1:]
        if not data:
            return []
        self._after_cr = data[-1:] == b"\r"
        if b"\n" not in data and b"\r" not in data:  # memchr: no line ends here
            self._extend(data)
            return []
        # bytes.splitlines breaks at exactly \n, \r\n and \r, in C.
        lines = data.splitlines()
        rest = b"" if data[-1:] in (b"\n", b"\r") else lines.pop()
        lines[0] = self._take(lines[0])
        if len(data) > self._limit:  # only then can a whole line be too long
            lines[1:] = [self._clip(line) for line in lines[1:]]
        self._extend(rest)
        return lines

    def finish(self) -> bytes:
        """What is left at end of stream, as a last line (may be empty)."""
        return self._take(b"")

    def _take(self, end: bytes) -> bytes:
        """The current line completed by ``end``; starts a new one."""
        self._extend(end)
        line = bytes(self._partial)
        if self._cut:
            line += _cut_marker(self._cut, "bytes").encode()
        self._partial.clear()
        self._cut = 0
        return line

    def _extend(self, data: bytes) -> None:
        room = self._limit - len(self._partial)
        if len(data) <= room:
            self._partial += data
        else:
            self._partial += data[: max(room, 0)]
            self._cut += len(data) - max(room, 0)

    def _clip(self, line: bytes) -> bytes:
        if len(line) <= self._limit:
            return line
        return line[: self._limit] + _cut_marker(len(line) - self._limit, "bytes").encode()


class RateLimit:
    """A token bucket of lines, with the count of what it refused."""

    def __init__(
        self,
        burst: int = BURST,
        rate: float = RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.rate = rate
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self.dropped = 0  # refused since the last note
        self._note_due = 0.0

    def take(self, wanted: int) -> int:
        """How many of ``wanted`` lines may be emitted now; the rest count as dropped."""
        now = self._refill()
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        if granted < wanted:
            if not self.dropped:
                self._note_due = now + NOTE_INTERVAL
            self.dropped += wanted - granted
        return granted

    def limited(self) -> bool:
        """Whether the next line would be dropped."""
        self._refill()
        return self._tokens < 1.0

    def wait_time(self) -> float:
        """Seconds until the next line may pass."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.rate)

    def note_wait(self) -> float | None:
        """Seconds until a note about dropped lines is due; None when none is pending."""
        if not self.dropped:
            return None
        return max(0.0, self._note_due - self._clock())

    def take_note(self, *, force: bool = False) -> int:
        """The count of dropped lines to report now (0: nothing to report yet)."""
        if not self.dropped or (not force and self._clock() < self._note_due):
            return 0
        count, self.dropped = self.dropped, 0
        return count

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return now


def _write_host_stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed or broken stderr: nowhere to show it
        pass


def encode_record(levelno: int, name: str, text: str) -> str:
    """The line an actor writes to stderr for one ``logging`` record (without
    its newline); it fits in :data:`MAX_LINE`, keeping the head and the tail
    of a long message (a traceback's last lines name the error)."""
    name = name[:MAX_NAME]
    line = LOG_PREFIX + json.dumps([levelno, name, text])
    keep = len(text)
    original = text
    while len(line) > MAX_LINE and keep > 0:
        # JSON escapes make the line up to 6x the text: shrink in proportion.
        keep = max(0, keep * MAX_LINE // len(line) - 128)
        head, tail = original[: keep // 2], original[len(original) - keep // 2 :]
        text = head + _cut_marker(len(original) - 2 * (keep // 2), "characters") + " " + tail
        line = LOG_PREFIX + json.dumps([levelno, name, text])
    return line


def parse_record(line: str) -> tuple[int, str, str] | None:
    """``(level, logger name, message)`` of a forwarded record, made safe to
    log; None when ``line`` is not exactly a well-formed record."""
    if not line.startswith(LOG_PREFIX):
        return None
    try:
        value: Any = json.loads(line[len(LOG_PREFIX) :])
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deep
        return None
    if not (isinstance(value, list) and len(value) == 3):
        return None
    levelno, name, message = value
    if type(levelno) is not int or not isinstance(name, str) or not isinstance(message, str):
        return None
    if levelno > logging.CRITICAL:
        levelno = logging.CRITICAL
    elif levelno < 1:  # NOTSET or negative: no level a logger emits at
        levelno = logging.WARNING
    name = name[:MAX_NAME]
    if not name.isprintable():  # a newline or escape in the name would forge log lines
        name = "".join(c if c.isprintable() else "?" for c in name)
    return levelno, name, message[:MAX_LINE]


class ActorOutput:
    """One actor's output, as the host turns it into log records.

    Both of its pipes (stdout at INFO, stderr at WARNING) share one rate
    limit; :meth:`pump` runs as a task per pipe. Where the host has not
    configured logging (no handler would show the records), plain lines go
    to the host's stderr instead, as ``[actor-name] line``, so that ``print()``
    in an actor is seen by default; configure logging to get records.
    """

    def __init__(
        self,
        logger: logging.Logger,
        tail: collections.deque[str],
        limit: RateLimit | None = None,
    ) -> None:
        self.logger = logger
        self.tail = tail  # the last stderr lines, for start-up errors
        self.limit = limit or RateLimit()
        self.name = logger.name.removeprefix("pyisolate.actor.")
        self._done: dict[str, anyio.Event] = {}  # per stream: its pump has ended

    async def pump(self, fd: int, stream_name: str, exited: anyio.Event | None = None) -> None:
        """Read ``fd`` (non-blocking) until end of file, emitting its lines.

        Once ``exited`` is set the actor cannot be slowed any more, so what is
        left in the pipe is read at once (its last words explain its end).
        """
        stderr = stream_name == "stderr"
        level = logging.WARNING if stderr else logging.INFO
        splitter = LineSplitter()
        done = self._done.setdefault(stream_name, anyio.Event())
        turn = 0  # bytes read in this loop turn
        try:
            while True:
                try:
                    chunk = os.read(fd, CHUNK)
                except BlockingIOError:
                    await self._wait_readable(fd)
                    turn = 0
                    continue
                if not chunk:
                    break
                await self._handle(splitter.feed(chunk), level, stderr)
                self._note()
                turn += len(chunk)
                # At most CHUNK bytes per loop turn (short reads add up: a
                # writer on another core could keep every read short); one
                # chunk per token interval while over the rate, so the
                # flooder's pipe fills and its own writes block.
                if self.limit.limited() and not (exited and exited.is_set()):
                    if exited is None:
                        await anyio.sleep(self.limit.wait_time())
                    else:
                        with anyio.move_on_after(self.limit.wait_time()):
                            await exited.wait()
                    turn = 0
                elif turn >= CHUNK:
                    await anyio.lowlevel.checkpoint()
                    turn = 0
            await self._handle([splitter.finish()], level, stderr)
        finally:
            self._note(force=True)
            done.set()

    async def drained(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the pumps started so far to reach
        end of file (then :attr:`tail` holds the actor's last words)."""
        with anyio.move_on_after(timeout):
            for done in list(self._done.values()):
                await done.wait()

    async def _wait_readable(self, fd: int) -> None:
        wait = self.limit.note_wait()
        if wait is None:
            await anyio.wait_readable(fd)
            return
        with anyio.move_on_after(wait):
            await anyio.wait_readable(fd)
        self._note()

    async def _handle(self, lines: list[bytes], level: int, stderr: bool) -> None:
        lines = list(filter(None, lines))  # empty lines are skipped (C speed)
        granted = self.limit.take(len(lines))
        for index, raw in enumerate(lines[:granted], 1):
            self._emit(raw.decode(errors="replace"), level, stderr, log=True)
            if index % EMIT_BATCH == 0:  # a burst's records cost the loop, too
                await anyio.lowlevel.checkpoint()
        if stderr and granted < len(lines):
            # Dropped lines still reach the tail; only its last ones are decoded.
            room = len(lines) if self.tail.maxlen is None else self.tail.maxlen
            for raw in lines[max(granted, len(lines) - room) :]:
                self._emit(raw.decode(errors="replace"), level, stderr, log=False)

    def _emit(self, line: str, level: int, stderr: bool, *, log: bool) -> None:
        record = parse_record(line) if stderr else None
        if record is not None:
            levelno, name, message = record
            self.tail.append(message[:TAIL_CHARS])
            if log:
                self.logger.log(levelno, "[%s] %s", name, message)
            return
        if stderr:
            self.tail.append(line[:TAIL_CHARS])
        if not log:
            return
        if self.logger.hasHandlers():
            self.logger.log(level, "%s", line)
        else:
            # Logging is not configured in the host: print() in an actor would
            # vanish (INFO) or lose its actor's name (logging's last resort).
            # Show it as a terminal would, tagged with the actor's name.
            _write_host_stderr(f"[{self.name}] {line}\n")

    def _note(self, *, force: bool = False) -> None:
        count = self.limit.take_note(force=force)
        if count:
            self.logger.warning(
                "pyisolate: %d lines from actor %r dropped (rate limit)", count, self.name
            )
