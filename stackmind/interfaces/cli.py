"""`stackmind` command line: each ``cli_*`` module registers its commands on `app` when imported."""

from __future__ import annotations

from stackmind.interfaces import (  # noqa: F401  (imported for their commands)
    cli_bench,
    cli_chat,
    cli_consolidate,
    cli_core,
    cli_episodes,
    cli_learn,
    cli_memory,
    cli_policy,
    cli_sandbox,
    cli_search,
    cli_value,
)
from stackmind.interfaces._app import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
