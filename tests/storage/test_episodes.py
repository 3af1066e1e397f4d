"""The episode store on trace files and on PostgreSQL: save (again after every step), load, list since,
ratings, export/import as trace files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fakes.servers import Backend

from stackmind.storage import (
    EpisodeNotFound,
    FileEpisodeStore,
    PostgresEpisodeStore,
    export_episodes,
    import_episodes,
    open_episodes,
)
from stackmind.trace import Episode, Step, TraceError


def episode(goal: str = "What is 6 * 7?", **kw: object) -> Episode:
    return Episode(goal=goal, stack="chat-1", meta={"owner": "telegram:1"}, **kw)  # type: ignore[arg-type]


def test_save_after_every_step_load_and_list(backend: Backend) -> None:
    with open_episodes(backend.settings()) as store:
        assert isinstance(store, PostgresEpisodeStore if backend.name == "postgresql" else FileEpisodeStore)
        ep = episode()
        for i in range(5):  # the agent saves again after each step: one upsert / one rename each
            ep.steps.append(Step(thought=f"step {i}\nwith a second line", action="@python(print(6*7))",
                                 observation="42", value=0.5))
            where = store.save(ep)
        assert where == store.where(ep.id)
        ep.answer = "42"
        store.save(ep)
        got = store.load(ep.id)
        assert got.to_dict() == ep.to_dict()  # lossless, multi-line texts included
        other = episode("What is 2 + 2?")
        store.save(other)
        assert store.ids() == sorted([ep.id, other.id])
        assert {e.id for e in store.episodes()} == {ep.id, other.id}
        with pytest.raises(EpisodeNotFound):
            store.load("20990101-000000-ffffff")
        with pytest.raises(TraceError, match="not an episode id"):
            store.load("../etc/passwd")


def test_since_means_saved_or_rated_since(backend: Backend) -> None:
    with open_episodes(backend.settings()) as store:
        old, new = episode("old goal"), episode("new goal")
        store.save(old)
        time.sleep(0.05)
        cut = time.time()
        time.sleep(0.05)
        store.save(new)
        assert store.ids(since=cut) == [new.id]
        assert [e.goal for e in store.episodes(since=cut)] == ["new goal"]
        store.rate(old.id, 1.0, by="telegram:1")  # a late rating brings the old episode back into view
        assert set(store.ids(since=cut)) == {old.id, new.id}


def test_ratings_are_recorded_on_the_trace(backend: Backend) -> None:
    with open_episodes(backend.settings()) as store:
        ep = episode()
        ep.answer = "42"
        store.save(ep)
        store.rate(ep.id, 1.0, by="telegram:1")
        rated = store.rate(ep.id, -1.0, by="telegram:2")
        assert rated.reward == -1.0
        got = store.load(ep.id)
        assert got.reward == -1.0 and got.answer == "42"
        assert [(f["reward"], f["by"]) for f in got.meta["feedback"]] == [(1.0, "telegram:1"), (-1.0, "telegram:2")]
        if isinstance(store, PostgresEpisodeStore):
            assert [r["by"] for r in store.ratings(ep.id)] == ["telegram:1", "telegram:2"]
        with pytest.raises(EpisodeNotFound):
            store.rate("20990101-000000-ffffff", 1.0, by="x")


def test_concurrent_ratings_lose_none(backend: Backend) -> None:
    with open_episodes(backend.settings()) as store:
        ep = episode()
        store.save(ep)

        def rate(i: int) -> None:
            store.rate(ep.id, 1.0 if i % 2 else 0.0, by=f"user-{i}")

        threads = [threading.Thread(target=rate, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(f["by"] for f in store.load(ep.id).meta["feedback"]) == sorted(f"user-{i}" for i in range(8))


def test_export_edit_import_round_trip(backend: Backend, tmp_path: Path) -> None:
    with open_episodes(backend.settings()) as store:
        eps = [episode(f"goal {i}") for i in range(3)]
        for ep in eps:
            store.save(ep)
        out = tmp_path / "out"
        paths = export_episodes(store, out)
        assert sorted(p.name for p in paths) == sorted(f"{e.id}.trace.yaml" for e in eps)
        assert Episode.load(paths[0]).to_dict() == store.load(paths[0].name.split(".")[0]).to_dict()
        # A person corrects one trace, adds a new one and breaks a third.
        first = out / f"{eps[0].id}.trace.yaml"
        first.write_text(first.read_text().replace("goal 0", "goal 0 (corrected)"))
        (out / f"{eps[1].id}.trace.yaml").unlink()
        (out / "20260101-000000-abcdef.trace.yaml").write_text("goal: a hand-written trace\nid: 20260101-000000-abcdef\n")
        (out / "broken.trace.yaml").write_text("goal: [unclosed\n")
        new, replaced, problems = import_episodes(store, out)
        assert new == ["20260101-000000-abcdef"] and sorted(replaced) == sorted([eps[0].id, eps[2].id])
        assert len(problems) == 1 and "broken.trace.yaml:" in problems[0]
        assert store.load(eps[0].id).goal == "goal 0 (corrected)"
        assert store.load(eps[1].id).goal == "goal 1"  # not in the folder: left as it was


def test_unparseable_trace_is_reported_not_fatal(settings, tmp_path: Path) -> None:  # noqa: ANN001
    store = FileEpisodeStore(settings.episodes_dir)
    store.save(episode())
    (settings.episodes_dir / "bad.trace.yaml").write_text("goal: [unclosed\n")
    problems: list[str] = []
    assert len(list(store.episodes(problems=problems))) == 1
    assert "bad.trace.yaml:2:1: YAML syntax" in problems[0]
    with pytest.raises(TraceError):
        list(store.episodes())


def test_file_saves_are_atomic_and_leave_no_temporaries(settings) -> None:  # noqa: ANN001
    store = FileEpisodeStore(settings.episodes_dir)
    ep = episode()
    stop = threading.Event()
    seen: list[int] = []

    def read() -> None:
        while not stop.is_set():
            path = settings.episodes_dir / f"{ep.id}.trace.yaml"
            if path.exists():
                seen.append(len(Episode.load(path).steps))  # never half a file

    store.save(ep)
    reader = threading.Thread(target=read)
    reader.start()
    for i in range(40):
        ep.steps.append(Step(thought=f"step {i} " + "x" * 2000))
        store.save(ep)
    stop.set()
    reader.join()
    assert seen and seen == sorted(seen)
    assert sorted(p.name for p in settings.episodes_dir.iterdir() if not p.name.startswith(".locks")) == \
        [f"{ep.id}.trace.yaml"]
