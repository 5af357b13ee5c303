"""The GPU check: every ``cuda`` test, the GPU example and the GPU benchmark
rows, in one call, with a short report. Run through ``scripts/gpu-check``.

Made for the device machine (no network; its own python3 with a CUDA torch;
no pyzmq, trio or bubblewrap): the missing pieces come from ``.gpu-wheels/``
(made here by ``scripts/gpu-wheels``, carried by the device call), installed
with ``pip --no-index`` into a private directory, bubblewrap unpacked into a
private prefix. On a machine without a GPU it says so and runs the CPU
equivalents (the CPU twins of the lifetime tests, the example on CPU
tensors, the benchmark's CPU rows), and exits 0.

    python3 scripts/gpu_check.py [OUTDIR] [--budget SECONDS]

OUTDIR defaults to ``$OUT`` (the device tool's output folder), else
``./gpu-check-out``. It writes at most 8 files there (the device tool brings
back 8): ``report.md`` and one log per step. Each step has a timeout and the
whole run a budget (default 450 s), so that it ends inside 8 minutes.
Only the standard library is used here: this runs before the wheels are in.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".gpu-wheels"
SITE = Path("/tmp/pyisolate-gpu-site")
BWRAP_PREFIX = Path("/tmp/pyisolate-bwrap")
# Which module each carried distribution provides (to skip what is installed).
MODULES = {"pyzmq": "zmq", "trio": "trio", "outcome": "outcome", "sniffio": "sniffio"}


class Check:
    def __init__(self, out: Path, budget: float) -> None:
        self.out = out
        self.deadline = time.monotonic() + budget
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.notes: list[str] = []
        self.steps: list[tuple[str, str, float, str]] = []  # name, status, seconds, detail

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, text: str) -> None:
        print(f"gpu-check: {text}", flush=True)

    def run(
        self, name: str, argv: list[str], log: str, limit: float, env: dict[str, str] | None = None
    ) -> tuple[int | None, str]:
        """Run ``argv`` with at most ``limit`` seconds (less if the budget is
        short); its output goes to OUT/log (appended). None: timed out/skipped."""
        timeout = min(limit, self.left() - 10)
        if timeout < 15:
            self.steps.append((name, "skipped", 0.0, "no time left in the budget"))
            self.say(f"{name}: skipped, no time left")
            return None, ""
        self.say(f"{name}: {' '.join(argv)} (timeout {timeout:.0f} s)")
        start = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                cwd=ROOT,
                env=env or self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                timeout=timeout,
            )
            code: int | None = proc.returncode
            output = proc.stdout
        except subprocess.TimeoutExpired as exc:
            code = None
            raw = exc.stdout or b""
            output = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            output += f"\n[gpu-check: timed out after {timeout:.0f} s]\n"
        seconds = time.monotonic() - start
        with open(self.out / log, "a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(argv)}\n{output}\n[exit {code}, {seconds:.1f} s]\n\n")
        status = "timed out" if code is None else ("ok" if code == 0 else f"exit {code}")
        self.steps.append((name, status, seconds, log))
        return code, output


def _dist_name(wheel: Path) -> str:
    return wheel.name.split("-")[0].lower().replace("_", "-")


def install_wheels(check: Check, python: str) -> None:
    """Install the carried wheels that this interpreter lacks, offline."""
    wheels = sorted(WHEELS.glob("*.whl")) if WHEELS.is_dir() else []
    if not wheels:
        check.notes.append("no .gpu-wheels/ carried: using the packages installed here")
        return
    probe = (
        "import importlib.util, sys; "
        "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    )
    wanted = {MODULES.get(_dist_name(w), _dist_name(w)): w for w in wheels}
    missing = subprocess.run(
        [python, "-c", probe, *wanted], capture_output=True, text=True, timeout=60
    ).stdout.split()
    chosen = [wanted[m] for m in missing if m in wanted]
    if not chosen:
        check.notes.append("every carried wheel's package is installed here already")
        return
    shutil.rmtree(SITE, ignore_errors=True)
    argv = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    argv += ["--no-cache-dir", "--disable-pip-version-check", "--target", str(SITE)]
    code, _ = check.run("install wheels", argv + [str(w) for w in chosen], "env.log", 120)
    if code != 0:
        check.notes.append("installing the carried wheels FAILED (see env.log)")
        return
    check.env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SITE), check.env.get("PYTHONPATH", "")) if p
    )
    check.notes.append("installed from .gpu-wheels/: " + ", ".join(w.name for w in chosen))


def provide_bwrap(check: Check) -> None:
    """Use the host's bubblewrap, else the carried .deb unpacked into a prefix."""
    if shutil.which("bwrap", path=check.env.get("PATH")):
        check.notes.append(f"bubblewrap: {shutil.which('bwrap', path=check.env.get('PATH'))}")
        return
    debs = sorted(WHEELS.glob("bubblewrap_*.deb")) if WHEELS.is_dir() else []
    if not debs or not shutil.which("dpkg"):
        check.notes.append("bubblewrap: none here and none carried: actors run unsandboxed")
        return
    shutil.rmtree(BWRAP_PREFIX, ignore_errors=True)
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(BWRAP_PREFIX)], check=False, timeout=60)
    binary = BWRAP_PREFIX / "usr" / "bin" / "bwrap"
    try:
        version = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=20
        )
        works = version.returncode == 0
    except OSError as exc:
        works, version = False, None
        check.notes.append(f"bubblewrap from {debs[-1].name} does not run: {exc}")
    if works and version is not None:
        check.env["PATH"] = f"{binary.parent}{os.pathsep}{check.env.get('PATH', '')}"
        check.notes.append(f"bubblewrap: carried {debs[-1].name} ({version.stdout.strip()})")


def facts(check: Check, python: str) -> dict[str, str]:
    found = {"device": "none", "torch": "?", "cuda": "no"}
    smi = shutil.which("nvidia-smi")
    if smi:
        code, out = check.run(
            "nvidia-smi",
            [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            "env.log",
            30,
        )
        if code == 0 and out.strip():
            found["device"] = out.strip().splitlines()[0]
    code, out = check.run(
        "python and torch",
        [
            python,
            "-c",
            "import sys, torch; ok = torch.cuda.is_available(); "
            "print(sys.version.split()[0], torch.__version__, torch.version.cuda, ok, "
            "torch.cuda.get_device_name(0) if ok else '-')",
        ],
        "env.log",
        90,
    )
    if code == 0 and out.strip():
        parts = out.strip().splitlines()[-1].split(" ", 4)
        found.update(python=parts[0], torch=f"{parts[1]} (CUDA {parts[2]})")
        found["cuda"] = "yes" if parts[3] == "True" else "no"
        if found["cuda"] == "yes" and found["device"] == "none":
            found["device"] = parts[4]
    check.run("doctor", [python, "-m", "pyisolate", "doctor"], "env.log", 60)
    return found


def choose_sandbox(check: Check, python: str) -> str:
    """'auto' where a sandboxed actor sees the GPU; else 'disabled', with why."""
    code, out = check.run("preflight", [python, "scripts/gpu_preflight.py"], "env.log", 120)
    try:
        report = json.loads(out.strip().splitlines()[-1]) if code == 0 else {}
    except (ValueError, IndexError):
        report = {}
    boxed, bare = report.get("sandboxed", {}), report.get("unsandboxed", {})
    if boxed.get("cuda") and boxed.get("isolation") != "none" and not boxed.get("warnings"):
        check.notes.append(f"sandbox: GPU tests run sandboxed ({boxed.get('isolation')})")
        return "auto"
    why = (
        boxed.get("error")
        or "; ".join(boxed.get("warnings", []))
        or (
            f"a sandboxed actor sees no GPU (isolation {boxed.get('isolation')}, "
            f"/dev/nvidia* inside: {boxed.get('devices')})"
        )
    )
    check.notes.append(f"sandbox: GPU tests run UNSANDBOXED: {why}")
    if not bare.get("cuda"):
        check.notes.append(f"even an unsandboxed actor sees no GPU: {bare}")
    return "disabled"


def junit_counts(path: Path) -> tuple[dict[str, int], list[str]]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failures: list[str] = []
    if not path.exists():
        return counts, ["(no junit report: pytest did not finish)"]
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            counts["failed"] += 1
            message = (bad.get("message") or "").strip().splitlines()
            failures.append(f"{name}: {message[0][:200] if message else bad.tag}")
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, failures


def pytest_step(check: Check, python: str, name: str, args: list[str], limit: float) -> str:
    xml = check.out / f"{name}.xml"
    xml.unlink(missing_ok=True)
    argv = [python, "-m", "pytest", "-q", "-rfEs", f"--junitxml={xml}", *args]
    code, out = check.run(name, argv, f"{name}.log", limit)
    counts, failures = junit_counts(xml)
    line = ", ".join(f"{v} {k}" for k, v in counts.items())
    if code is None:
        line += " (TIMED OUT)"
    summary = re.findall(
        r"^=*\s*(\d+ (?:passed|failed|skipped|deselected|error).*?)\s*=*$", out, re.M
    )
    text = f"**{name}**: {line}" + (f" — pytest: `{summary[-1]}`" if summary else "")
    for failure in failures[:20]:
        text += f"\n  - FAILED {failure}"
    return text


def tail_lines(text: str, pattern: str | None = None, count: int = 30) -> list[str]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if pattern is not None:
        lines = [ln for ln in lines if re.search(pattern, ln)]
    return lines[-count:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", nargs="?", default=os.environ.get("OUT") or "gpu-check-out")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to test with")
    args = parser.parse_args()
    out = Path(args.outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in ("report.md", "env.log", "cuda-tests.log", "cpu-twins.log"):
        (out / old).unlink(missing_ok=True)
    for old in ("example.log", "bench.log"):
        (out / old).unlink(missing_ok=True)
    check = Check(out, args.budget)
    started = time.monotonic()
    python = args.python

    install_wheels(check, python)
    provide_bwrap(check)
    found = facts(check, python)
    gpu = found["cuda"] == "yes"
    sections: list[str] = []

    if gpu:
        sandbox = choose_sandbox(check, python)
        check.env["PYISOLATE_GPU_TEST_SANDBOX"] = sandbox
        sections.append(pytest_step(check, python, "cuda-tests", ["-m", "cuda", "tests"], 200))
    else:
        sandbox = "auto"
        check.notes.append("no GPU here: the CPU equivalents run instead")
        sections.append(pytest_step(check, python, "cuda-tests", ["-m", "cuda", "tests"], 120))
        twins = ["tests/transport/test_cuda_lifetime.py", "tests/transport/test_cuda_ipc.py"]
        sections.append(pytest_step(check, python, "cpu-twins", ["-m", "not cuda", *twins], 150))

    code, text = check.run("example", [python, "examples/gpu_tensors.py"], "example.log", 90)
    sections.append(
        f"**example** `examples/gpu_tensors.py`: {'ok' if code == 0 else 'FAILED'}\n"
        + "\n".join(f"    {ln}" for ln in tail_lines(text, count=12))
    )

    bench = [python, "-m", "benchmarks", "tensors"]
    bench += ["--gpu-only", "--sandbox", sandbox] if gpu else []
    code, text = check.run("benchmark", bench, "bench.log", 200 if gpu else 150)
    rows = tail_lines(text, count=16)
    sections.append(
        f"**benchmark** `{' '.join(bench[1:])}`: {'ok' if code == 0 else 'FAILED'}\n"
        + "\n".join(f"    {ln}" for ln in rows)
    )

    smi = shutil.which("nvidia-smi")
    if smi:
        check.run(
            "GPU processes left",
            [smi, "--query-compute-apps=pid,used_memory", "--format=csv"],
            "env.log",
            30,
        )

    failed = [s for s in check.steps if s[1] != "ok"]
    verdict = "PASS" if not failed else "FAIL: " + ", ".join(f"{s[0]} ({s[1]})" for s in failed)
    if not gpu:
        verdict = f"NO GPU here (CPU equivalents: {verdict})"
    report = [
        "# scripts/gpu-check report",
        "",
        f"- device: {found['device']}",
        f"- python {found.get('python', '?')}, torch {found['torch']}, CUDA available: {found['cuda']}",
        f"- verdict: {verdict}",
        f"- total {time.monotonic() - started:.0f} s",
        *(f"- {note}" for note in check.notes),
        "",
        *[s + "\n" for s in sections],
        "| step | status | seconds | log |",
        "|---|---|---|---|",
        *(f"| {n} | {st} | {sec:.1f} | {log} |" for n, st, sec, log in check.steps),
    ]
    (out / "report.md").write_text("\n".join(report) + "\n", encoding="utf-8")
    print("\n".join(report), flush=True)
    if not gpu:
        return 0
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
