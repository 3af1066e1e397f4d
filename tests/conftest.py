"""Shared fixtures.

Every test gets a fresh, empty STACKMIND_HOME. Heavy one-time work (the dequantized embedded
model, the sandbox's compiled module) is cached in one shared folder: $STACKMIND_TEST_CACHE, or
~/.cache/stackmind-test, so the second run of the suite is fast.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.servers import Backend, ChromaServer, PostgresServer, ServerUnavailable, unavailable

from stackmind.settings import Settings

SHARED_CACHE = Path(os.environ.get("STACKMIND_TEST_CACHE", Path.home() / ".cache" / "stackmind-test"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("STACKMIND_HOME", str(home))
    monkeypatch.setenv("STACKMIND_CACHE", str(SHARED_CACHE))
    for var in list(os.environ):
        if var.startswith("STACKMIND_") and var not in ("STACKMIND_HOME", "STACKMIND_CACHE", "STACKMIND_TEST_CACHE"):
            monkeypatch.delenv(var, raising=False)
    for var in ("TELEGRAM_BOT_TOKEN", "WOLFRAMALPHA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env or stackmind.toml from the checkout


@pytest.fixture
def settings() -> Settings:
    return Settings().ensure_dirs()


@pytest.fixture(scope="session")
def embedded_llm(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The real embedded model, loaded once per test session (first run: assembles and dequantizes)."""
    from stackmind.llm import load_llm

    home = tmp_path_factory.mktemp("llm-home")
    return load_llm(Settings(home=home, cache=SHARED_CACHE))


@pytest.fixture(scope="session")
def embedded_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model's GGUF file, assembled and verified in the shared cache."""
    from stackmind.llm.embedded import assemble_gguf

    return assemble_gguf(Settings(home=tmp_path_factory.mktemp("gguf-home"), cache=SHARED_CACHE))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (initdb in a temporary folder, a free port)."""
    try:
        server = PostgresServer().start()
    except ServerUnavailable as e:
        unavailable(str(e))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """The store tests run twice: on SQLite and on a fresh database of the session's PostgreSQL server
    (STACKMIND_DATABASE_URL set, so subprocesses see it too)."""
    if request.param == "sqlite":
        yield Backend("sqlite")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"t_{secrets.token_hex(6)}"
    url = server.create_database(name)
    monkeypatch.setenv("STACKMIND_DATABASE_URL", url)
    try:
        yield Backend("postgresql", url)
    finally:
        server.drop_database(name)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """One real `chroma run` for the session; each test that uses it gets a database of its own."""
    try:
        server = ChromaServer(tmp_path_factory.mktemp("chroma-server")).start()
    except ServerUnavailable as e:
        unavailable(str(e))
    try:
        yield server
    finally:
        server.stop()


# ---- the reliability suite's tally ---------------------------------------------------------------
# tests/reliability/conftest.py marks each report of a fault or control test with the cases it tried
# and held; they are summed here, in the root conftest, because under pytest-xdist the reports reach
# the controlling process (which loads only this conftest and alone prints the summary) with their
# user_properties.
_TALLY: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # fault class -> [tried, held]
_CONTROLS: dict[str, list[int]] = defaultdict(lambda: [0, 0])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key == "fault_cases":
            kind, name, tried, held = value
            row = (_TALLY if kind == "fault" else _CONTROLS)[name]
            row[0] += tried
            row[1] += held


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TALLY and not _CONTROLS:
        return
    terminalreporter.write_sep("=", "faults and bad input: cases tried / held")
    for title, table in (("class", _TALLY), ("controls (held at a9429b1 too)", _CONTROLS)):
        if not table:
            continue
        width = max(len(title), *(len(k) for k in table)) + 2
        terminalreporter.write_line(f"{title:<{width}}{'tried':>7}{'held':>7}")
        for name in sorted(table):
            tried, held = table[name]
            terminalreporter.write_line(f"{name:<{width}}{tried:>7}{held:>7}")
        terminalreporter.write_line(f"{'all':<{width}}{sum(t for t, _ in table.values()):>7}"
                                    f"{sum(h for _, h in table.values()):>7}")
    target = os.environ.get("STACKMIND_RELIABILITY_TABLE")
    if target:
        data = {kind: {k: {"tried": t, "held": h} for k, (t, h) in sorted(table.items())}
                for kind, table in (("faults", _TALLY), ("controls", _CONTROLS))}
        Path(target).write_text(json.dumps(data, indent=2) + "\n")
