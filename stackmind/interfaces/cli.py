"""`stackmind` command line: the core commands, plus every ``cli_*`` module's."""

from __future__ import annotations

import importlib
import importlib.util

from stackmind.interfaces._app import app

# Each module registers its commands on `app` when imported.
_COMMAND_MODULES = [
    "stackmind.interfaces.cli_core",
    "stackmind.interfaces.cli_sandbox",
    "stackmind.interfaces.cli_memory",
    "stackmind.interfaces.cli_policy",
    "stackmind.interfaces.cli_search",
]
for _name in _COMMAND_MODULES:
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
