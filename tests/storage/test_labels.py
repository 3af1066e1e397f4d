"""Hindsight labels live in the labels files, or in the database when STACKMIND_DATABASE_URL is set;
consolidation labels the store's episodes either way."""

from __future__ import annotations

from fakes.servers import Backend

from stackmind.storage import open_episodes
from stackmind.trace import Episode, Step
from stackmind.value.consolidation import label_unlabelled
from stackmind.value.labels import Label, load_labels, save_labels


def test_labels_round_trip_on_either_store(backend: Backend) -> None:
    settings = backend.settings()
    first = [Label(goal="g", stack=[], thought=f"t{i}", target=1.0, kind="return_to_go", source="tests",
                   created=f"2026-12-0{i + 1}T00:00:00+00:00") for i in range(3)]
    save_labels(settings, first)
    save_labels(settings, [Label(goal="g", stack=[], thought="c", target=1.0, kind="conclusion", source="tests",
                                 created="2026-12-05T00:00:00+00:00")])
    got = load_labels(settings)
    assert [lab.thought for lab in got] == ["t0", "t1", "t2", "c"]
    assert [lab.thought for lab in load_labels(settings, kinds=["conclusion"])] == ["c"]
    assert [lab.thought for lab in load_labels(settings, since="2026-12-03")] == ["t2", "c"]
    assert (settings.home / "labels").is_dir() == (backend.name == "sqlite")


def test_consolidation_labels_the_stores_episodes(backend: Backend) -> None:
    settings = backend.settings()
    with open_episodes(settings) as store:
        store.save(Episode(goal="What is 6 * 7?", answer="42", reward=1.0,
                           steps=[Step(thought="6 * 7 = 42", value=0.4)]))
    assert label_unlabelled(settings) > 0
    assert label_unlabelled(settings) == 0  # labelled once
    assert {lab.source for lab in load_labels(settings)}
