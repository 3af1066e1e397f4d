"""The typer application and the helpers every command module shares.

Command modules (``cli_*.py``) import `app` (or `bench_app`) from here and register their commands;
`stackmind.interfaces.cli` imports them all. The command line is a thin layer over the Python API.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

from stackmind.settings import Settings

app = typer.Typer(
    name="stackmind",
    help="A text-native, self-modifying agent: stack, tree-of-thought, sandbox, nightly LoRA.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks: print figures and write JSON.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

console = Console(stderr=True)  # progress and chatter go to stderr; answers and JSON to stdout
out = Console(highlight=False, soft_wrap=True, markup=False)

JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


def settings() -> Settings:
    return Settings()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an actionable error (no traceback) and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)
