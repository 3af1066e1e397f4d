"""`stackmind memory ...`: search, add, stats, forget and compact long-term memory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from stackmind.interfaces._app import JSON_OPTION, app, console, fail, out, print_json, settings

if TYPE_CHECKING:
    from stackmind.memory import Memory

memory_app = typer.Typer(help="Long-term memory (chromadb): search, add, stats, forget.", no_args_is_help=True)
app.add_typer(memory_app, name="memory")

OWNER_OPTION = typer.Option("local", "--owner", "-o", help="Whose memories (a user or chat id).")


@contextmanager
def _opened() -> Iterator[Memory]:
    from stackmind.memory import Memory, MemoryStoreError

    try:
        memory = Memory(settings())
    except MemoryStoreError as e:
        raise fail(str(e)) from e
    try:
        yield memory
    except MemoryStoreError as e:
        raise fail(str(e)) from e
    finally:
        memory.close()


@memory_app.command("search")
def search(
    query: str = typer.Argument(..., help="What to look for, in words."),
    owner: str = OWNER_OPTION,
    k: int = typer.Option(5, "-k", help="How many memories."),
    json: bool = JSON_OPTION,
) -> None:
    """The owner's memories nearest to QUERY, re-ranked by value and recency (does not count as a use)."""
    with _opened() as memory, console.status("searching ..."):
        found = memory.recall(query, owner=owner, k=k, touch=False)
    if json:
        print_json([r.to_dict() for r in found])
        return
    if not found:
        console.print(f"no memories of {owner!r} match")
        return
    for r in found:
        out.print(f"{r.score:.3f}  sim {r.similarity:.3f}  value {r.value:.2f}  uses {r.uses}  [{r.kind}] {r.text}")


@memory_app.command("add")
def add(
    text: str = typer.Argument(..., help="The memory's text."),
    owner: str = OWNER_OPTION,
    kind: str = typer.Option("conclusion", "--kind", help="Frame kind."),
    value: float = typer.Option(0.5, "--value", help="Value from 0 to 1."),
    json: bool = JSON_OPTION,
) -> None:
    """Store one memory by hand."""
    with _opened() as memory, console.status("embedding ..."):
        id_ = memory.store(text, owner=owner, kind=kind, value=value, provenance={"source": "cli"})
    if json:
        print_json({"id": id_, "owner": owner})
    else:
        out.print(id_)


@memory_app.command("stats")
def stats(json: bool = JSON_OPTION) -> None:
    """How many memories, by owner and kind; where they live."""
    with _opened() as memory:
        st = memory.stats()
    if json:
        print_json(st.to_dict())
        return
    out.print(f"{st.count} memories ({st.mode}: {st.location})")
    out.print("owners: " + (", ".join(f"{o} {n}" for o, n in st.owners.items()) or "none"))
    out.print("kinds: " + (", ".join(f"{o} {n}" for o, n in st.kinds.items()) or "none"))
    out.print(f"removed since the last compaction: {st.removed_since_compaction}")
    out.print(f"trace log: {st.trace_log} ({st.trace_events} events)")


@memory_app.command("forget")
def forget(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be forgotten."),
    json: bool = JSON_OPTION,
) -> None:
    """Apply the decay policy: demote fading memories, drop those below the threshold (the trace log keeps them)."""
    with _opened() as memory, console.status("forgetting ..."):
        report = memory.forget(dry_run=dry_run)
    if json:
        print_json(report.to_dict())
        return
    verb = "would forget" if dry_run else "forgot"
    out.print(f"examined {report.examined}; {verb} {len(report.removed)} below retention {report.threshold}; "
              f"{report.demoted} demoted" + ("; index compacted" if report.compacted else ""))
    for c in report.removed[:50]:
        out.print(f"  {c.retention:.4f}  {c.owner}  [{c.kind}] {c.text[:100]}")
    if len(report.removed) > 50:
        out.print(f"  ... and {len(report.removed) - 50} more")


@memory_app.command("compact")
def compact() -> None:
    """Rebuild the index from the live memories (reclaims what forgetting removed)."""
    with _opened() as memory, console.status("compacting ..."):
        n = memory.compact()
    out.print(f"rebuilt the index with {n} memories")
