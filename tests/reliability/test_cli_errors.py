"""The command line's one error path: one line on stderr and a non-zero exit, a traceback only with
--debug, for errors stackmind raises on purpose and for the ones it does not expect."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import stackmind.interfaces.cli  # noqa: F401  (registers every command)
from stackmind.interfaces._app import app
from stackmind.settings import Settings
from stackmind.stack import StackError

runner = CliRunner()


def _boom(exc: BaseException):  # noqa: ANN202
    def raise_it(*_a: object, **_k: object) -> None:
        raise exc
    return raise_it


CASES = {
    "unexpected KeyError": (KeyError("choices"), "unexpected KeyError", "run with --debug"),
    "unexpected RuntimeError": (RuntimeError("line one\nline two"), "unexpected RuntimeError: line one; line two",
                                "run with --debug"),
    "a StackmindError": (StackError("the stack 'x' is empty: push a goal first"), "the stack 'x' is empty", None),
    "an OSError with a path": (PermissionError(13, "Permission denied", "/data/stackmind.db"), "/data/stackmind.db",
                               "Permission denied"),
}


@pytest.mark.fault("CLI error path")
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_exception_is_one_line(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    exc, first, second = CASES[name]
    monkeypatch.setattr("stackmind.interfaces.cli_core.open_store", _boom(exc))
    home = Settings().home
    home.mkdir(parents=True)
    (home / "stackmind.db").write_bytes(b"")  # status opens the store when there is one
    res = runner.invoke(app, ["status"])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and first in lines[0], res.stderr
    if second:
        assert second in lines[0]
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["--debug", "status"])
    assert res.exit_code == 1 and "Traceback (most recent call last)" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")
