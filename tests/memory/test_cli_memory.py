from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from stackmind.interfaces.cli import app
from stackmind.memory import Memory
from stackmind.settings import Settings

runner = CliRunner()


def _seed(settings: Settings) -> None:
    with Memory(settings) as m:
        m.store("The staging server is called kestrel", owner="alice", value=0.9)
        m.store("The staging server is called falcon", owner="bob", value=0.9)
        m.store("Old trivia nobody needs", owner="alice", value=0.01)
        # Age every memory by 90 days, as if time had passed since they were stored.
        old = time.time() - 90 * 86400
        for _, collection in m._owner_collections():
            got = collection.get(include=["metadatas"])
            collection.update(ids=got["ids"], metadatas=[{"created": old, "last_used": old} for _ in got["ids"]])


def test_search_is_scoped_to_the_owner(settings: Settings) -> None:
    _seed(settings)
    res = runner.invoke(app, ["memory", "search", "what is the staging server called", "--owner", "alice", "--json"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.stdout)
    assert hits[0]["text"] == "The staging server is called kestrel"
    assert {h["owner"] for h in hits} == {"alice"} and hits[0]["uses"] == 0
    plain = runner.invoke(app, ["memory", "search", "staging server", "-o", "bob"])
    assert plain.exit_code == 0 and "falcon" in plain.stdout and "kestrel" not in plain.stdout


def test_empty_owner_fails_without_a_traceback(settings: Settings) -> None:
    res = runner.invoke(app, ["memory", "search", "anything", "--owner", ""])
    assert res.exit_code == 1 and "needs an owner" in res.output and "Traceback" not in res.output


def test_add_stats_and_forget_dry_run_then_for_real(settings: Settings) -> None:
    _seed(settings)
    add = runner.invoke(app, ["memory", "add", "Added by hand", "--owner", "carol", "--json"])
    assert add.exit_code == 0 and json.loads(add.stdout)["owner"] == "carol"
    stats = json.loads(runner.invoke(app, ["memory", "stats", "--json"]).stdout)
    assert stats["count"] == 4 and stats["owners"] == {"alice": 2, "bob": 1, "carol": 1}

    dry = runner.invoke(app, ["memory", "forget", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert [c["text"] for c in report["removed"]] == ["Old trivia nobody needs"] and report["dry_run"]
    assert json.loads(runner.invoke(app, ["memory", "stats", "--json"]).stdout)["count"] == 4

    real = runner.invoke(app, ["memory", "forget"])
    assert real.exit_code == 0 and "forgot 1" in real.stdout
    assert json.loads(runner.invoke(app, ["memory", "stats", "--json"]).stdout)["count"] == 3
    assert "rebuilt the index with 3 memories" in runner.invoke(app, ["memory", "compact"]).stdout
