"""Real servers on localhost for tests and benchmarks: PostgreSQL (``initdb`` in a temporary folder,
``pg_ctl start`` on a free port) and Chroma (``chroma run``).

PostgreSQL refuses to run as root, so when this process is root the server runs as the ``postgres``
user that Debian's package creates (``runuser -u postgres --``), in a folder it owns. Binaries are
looked up under /usr/lib/postgresql/*/bin (newest first), then on PATH.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from stackmind.settings import Settings


@dataclass(frozen=True)
class Backend:
    """Which database a parametrized test runs on (the ``backend`` fixture); ``url`` is set for PostgreSQL."""

    name: str
    url: str | None = None

    def settings(self) -> Settings:
        return Settings().ensure_dirs()  # STACKMIND_DATABASE_URL is in the environment for PostgreSQL


def unavailable(reason: str) -> None:
    """Skip locally; under CI=true fail, since .ci/run installs what the servers need."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run installs it, so a missing server is a failure)")
    pytest.skip(reason)


class ServerUnavailable(RuntimeError):
    """The server's programs are not installed here (the caller decides: skip locally, fail in CI)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bin() -> Path | None:
    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    found = shutil.which("pg_ctl")
    if found and (Path(found).resolve().parent / "initdb").is_file():
        return Path(found).resolve().parent
    return None


class PostgresServer:
    """A throwaway PostgreSQL cluster. ``fast`` turns fsync off (tests); benchmarks keep the defaults."""

    def __init__(self, *, fast: bool = True) -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            raise ServerUnavailable(
                "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin): "
                "apt-get install postgresql, as .ci/run does"
            )
        self.fast = fast
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="stackmind-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.sockets.mkdir()
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError as e:
                raise ServerUnavailable("running as root and there is no 'postgres' user to run the server as") from e
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.user = "postgres" if self._as else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *args: str, timeout: float = 120) -> None:
        proc = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stdout[-1500:]}{proc.stderr[-1500:]}")

    def start(self) -> PostgresServer:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        opts = [f"-p {self.port}", f"-k {self.sockets}", "-c listen_addresses=127.0.0.1", "-c max_connections=300"]
        if self.fast:
            opts += ["-c fsync=off", "-c full_page_writes=off"]
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "-o", " ".join(opts), "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)


class ChromaServer:
    """``chroma run`` (the installed chromadb's server) on a free port, its data in ``path``."""

    def __init__(self, path: Path) -> None:
        exe = shutil.which("chroma")
        if exe is None:
            raise ServerUnavailable("the `chroma` command (from the chromadb package) is not on PATH")
        self.exe = exe
        self.path = Path(path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> ChromaServer:
        self.path.mkdir(parents=True, exist_ok=True)
        self._log = open(self.path / "chroma.log", "w+b")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([self.exe, "run", "--path", str(self.path / "data"), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chroma run exited with {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"chroma run did not answer its heartbeat within {timeout} s")
            time.sleep(0.2)

    def log(self) -> str:
        self._log.flush()
        return (self.path / "chroma.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self._log.close()
