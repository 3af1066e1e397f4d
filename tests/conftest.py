"""Shared fixtures.

Every test gets a fresh, empty STACKMIND_HOME. Heavy one-time work (the dequantized embedded
model, the sandbox's compiled module) is cached in one shared folder: $STACKMIND_TEST_CACHE, or
~/.cache/stackmind-test, so the second run of the suite is fast.
"""

from __future__ import annotations

import os
import secrets
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
