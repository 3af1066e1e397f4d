"""Episodes in and out of the store: `stackmind episodes list|export|import`.

With ``STACKMIND_DATABASE_URL`` set, episodes live in PostgreSQL; ``export DIR`` writes them as
``<id>.trace.yaml`` files (the format a person reads and corrects), ``import DIR`` puts such files
(corrected, or from another machine's episodes folder) back. Without it, the store is the episodes
folder itself and the commands copy files.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from stackmind.interfaces._app import JSON_OPTION, app, console, fail, out, print_json, settings
from stackmind.storage import EpisodeStore, StorageError, export_episodes, import_episodes, open_episodes

episodes_app = typer.Typer(help="Episodes in the store: list them, export them as trace files, import trace files.",
                           no_args_is_help=True)
app.add_typer(episodes_app, name="episodes")

SINCE_OPTION = typer.Option(None, "--since", help="Only episodes saved or rated since this ISO date/time (UTC), "
                                                  "e.g. 2026-12-01 or 2026-12-01T18:00.")

EXPORT_DIR = typer.Argument(..., help="Folder to write <id>.trace.yaml files into.")
IMPORT_DIR = typer.Argument(..., exists=True, file_okay=False, help="Folder of *.trace.yaml files.")


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--since takes an ISO date or date-time such as 2026-12-01T18:00, not {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _open() -> EpisodeStore:
    try:
        return open_episodes(settings())
    except StorageError as e:
        raise fail(str(e)) from None


@episodes_app.command("list")
def list_(since: str = SINCE_OPTION, json: bool = JSON_OPTION) -> None:
    """The store's episodes: id, reward, goal."""
    with _open() as store:
        problems: list[str] = []
        rows = [{"id": e.id, "reward": e.reward, "kind": e.kind, "stack": e.stack, "goal": e.goal}
                for e in store.episodes(_since(since), problems)]
        location = store.location
    if json:
        print_json({"store": location, "episodes": rows, "problems": problems})
        return
    console.print(f"{len(rows)} episodes in {location}")
    for r in rows:
        reward = "-" if r["reward"] is None else f"{r['reward']:+.1f}"
        goal = r["goal"].replace("\n", " ")
        out.print(f"{r['id']}  {reward:>4}  {goal[:90]}")
    for p in problems:
        console.print(f"skipped: {p}", soft_wrap=True, markup=False)


@episodes_app.command("export")
def export(directory: Path = EXPORT_DIR,
           since: str = SINCE_OPTION, json: bool = JSON_OPTION) -> None:
    """Write the store's episodes as trace files (an existing file of the same id is replaced)."""
    with _open() as store:
        if Path(store.location).resolve() == directory.resolve():
            raise fail(f"{directory} is the store itself: export to another folder")
        paths = export_episodes(store, directory, _since(since))
        location = store.location
    if json:
        print_json({"store": location, "directory": str(directory), "exported": len(paths)})
        return
    out.print(f"exported {len(paths)} episodes from {location} to {directory}")


@episodes_app.command("import")
def import_(directory: Path = IMPORT_DIR,
            json: bool = JSON_OPTION) -> None:
    """Save trace files into the store; an episode of the same id is replaced (a corrected trace wins).
    A file that does not parse is reported (file:line) and not saved; the exit status is then 1."""
    with _open() as store:
        if Path(store.location).resolve() == directory.resolve():
            raise fail(f"{directory} is the store itself: nothing to import")
        new, replaced, problems = import_episodes(store, directory)
        location = store.location
    if json:
        print_json({"store": location, "new": new, "replaced": replaced, "problems": problems})
    else:
        out.print(f"imported {len(new) + len(replaced)} episodes into {location}: {len(new)} new, "
                  f"{len(replaced)} replaced")
        for p in problems:
            console.print(f"not imported: {p}", soft_wrap=True, markup=False)
    if problems:
        raise typer.Exit(1)
