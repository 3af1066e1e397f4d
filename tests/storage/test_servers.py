"""The test servers: a missing PostgreSQL skips locally but fails under CI=true (.ci/run installs it)."""

from __future__ import annotations

import pytest
from fakes.servers import PostgresServer, ServerUnavailable
from fakes.servers import unavailable as _unavailable


def test_missing_server_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        _unavailable("PostgreSQL is not installed")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        _unavailable("PostgreSQL is not installed")


def test_no_binaries_is_reported_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fakes.servers.postgres_bin", lambda: None)
    with pytest.raises(ServerUnavailable, match="apt-get install postgresql"):
        PostgresServer()
