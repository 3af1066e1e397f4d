"""Fixtures for the sandbox tests: one warmed sandbox per test session, generated scratch files.

The CPython-WASI module is compiled once into the shared test cache (first run: minutes) and
loaded from there afterwards; tests that need it are marked slow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sandbox_helpers import GENERATORS

from stackmind.sandbox import Sandbox

# The same shared cache as tests/conftest.py gives every test through STACKMIND_CACHE.
SHARED_CACHE = Path(os.environ.get("STACKMIND_TEST_CACHE", Path.home() / ".cache" / "stackmind-test"))


@pytest.fixture(scope="session")
def generated_files() -> dict[str, bytes]:
    return {name: make() for name, make in GENERATORS.items()}


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    """A warmed sandbox (its compiled module in the shared test cache)."""
    sb = Sandbox(cache_dir=SHARED_CACHE / "sandbox", progress=lambda m: print(f"sandbox: {m}"))
    sb.warm()
    return sb


