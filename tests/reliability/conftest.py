"""The reliability suite's helpers, and the tally it ends with.

Every test here is marked ``@pytest.mark.fault("class")``, the class of fault or bad input it tries
(each of these failed on the code at a9429b1), or ``@pytest.mark.control("class")`` for a case that
already held then and is kept so that it stays so. A test counts one case, or as many as it declares
with the ``cases`` fixture (``cases.tried("...")`` before each one; a property-based test counts its
examples). At the end of the session the table of cases tried and held (no traceback, bounded,
nothing lost) per class is printed, controls apart, and written as JSON to
``$STACKMIND_RELIABILITY_TABLE`` when that is set. A failing test holds all its cases but the last
one it tried.

The commands run as real processes of this checkout (``PYTHONPATH`` is the worktree), with a fresh
``STACKMIND_HOME`` each; a model is a scripted OpenAI-compatible server on localhost, except for
consolidation, which trains the embedded model for a few steps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(name): the class of fault or bad input a reliability test tries")
    config.addinivalue_line("markers", "control(name): a case of that class that held at a9429b1 already")


@dataclass
class Cases:
    labels: list[str] = field(default_factory=list)

    def tried(self, label: str) -> None:
        self.labels.append(label)


@pytest.fixture
def cases(request: pytest.FixtureRequest) -> Cases:
    c = Cases()
    request.node._fault_cases = c  # type: ignore[attr-defined]
    return c


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("fault") or item.get_closest_marker("control")
    if marker is None or report.when != "call" and not (report.when == "setup" and report.failed):
        return
    declared = getattr(item, "_fault_cases", None)
    tried = max(1, len(declared.labels)) if declared is not None else 1
    held = tried if report.passed else tried - 1
    if report.skipped:
        return
    # summed by the root conftest (tests/conftest.py), which under pytest-xdist is the controller's
    report.user_properties.append(("fault_cases", (marker.name, marker.args[0], tried, held)))


# ---- running the command line as a person does --------------------------------------------------

@dataclass
class Ran:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def env_for(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a `stackmind` process: this checkout's code, its own data dir, nothing of
    the developer's settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STACKMIND_") and k not in ("TELEGRAM_BOT_TOKEN", "WOLFRAMALPHA_API_KEY")}
    env.update(PYTHONPATH=str(ROOT), STACKMIND_HOME=str(home),
               STACKMIND_CACHE=os.environ.get("STACKMIND_CACHE", str(Path.home() / ".cache" / "stackmind-test")),
               PYTHONUNBUFFERED="1", COLUMNS="200")
    env.update(extra)
    return env


def stackmind(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120.0,
              stdin: str | None = None) -> Ran:
    """Run ``stackmind ARGS`` (this checkout) to the end; its own peak memory is read from /proc while it runs."""
    return finish(start(args, env, cwd, stdin), timeout, args)


def start(args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "stackmind.interfaces.cli", *args], env=env, cwd=cwd,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc._t0 = time.monotonic()  # type: ignore[attr-defined]
    proc._out = {}  # type: ignore[attr-defined]
    for name in ("stdout", "stderr"):
        stream = getattr(proc, name)
        t = threading.Thread(target=lambda n=name, s=stream: proc._out.__setitem__(n, s.read()), daemon=True)  # type: ignore[attr-defined]
        t.start()
        proc._out[name + "_thread"] = t  # type: ignore[attr-defined]
    if stdin is not None and proc.stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    return proc


def finish(proc: subprocess.Popen[str], timeout: float, args: list[str] | None = None) -> Ran:
    deadline = proc._t0 + timeout  # type: ignore[attr-defined]
    if proc.returncode is not None:  # already reaped (by poll()): its peak memory is not known
        _join(proc)
        out = proc._out  # type: ignore[attr-defined]
        return Ran(proc.returncode, out.get("stdout", ""), out.get("stderr", ""), time.monotonic() - proc._t0,  # type: ignore[attr-defined]
                   float("nan"))
    peak_kb = 0
    while True:
        peak_kb = max(peak_kb, _hwm_kb(proc.pid))
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            _join(proc)
            raise AssertionError(f"stackmind {' '.join(args or [])} still ran after {timeout:.0f} s:\n"
                                 f"{proc._out.get('stderr', '')[-3000:]}")  # type: ignore[attr-defined]
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    _join(proc)
    out = proc._out  # type: ignore[attr-defined]
    return Ran(proc.returncode, out.get("stdout", ""), out.get("stderr", ""), time.monotonic() - proc._t0,  # type: ignore[attr-defined]
               peak_kb / 1024)


def _hwm_kb(pid: int) -> int:
    """The process's own peak resident memory so far (VmHWM of its current image). wait4's ru_maxrss
    is no use here: Linux carries the forking parent's peak across exec, and pytest holds the model."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _join(proc: subprocess.Popen[str]) -> None:
    for name in ("stdout", "stderr"):
        proc._out[name + "_thread"].join(10)  # type: ignore[attr-defined]


def one_error_line(ran: Ran) -> str:
    """The one line a failing command prints: exit non-zero, no traceback, exactly one 'error:' line."""
    assert ran.rc != 0, ran.output
    assert "Traceback" not in ran.output, ran.output[-3000:]
    errors = [line for line in ran.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, ran.stderr[-3000:]
    return errors[0]


def kill(proc: subprocess.Popen[str]) -> Ran:
    """SIGKILL, as the kernel's OOM killer or a power cut would; what it printed until then."""
    proc.send_signal(signal.SIGKILL)
    return finish(proc, timeout=1e9)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d
