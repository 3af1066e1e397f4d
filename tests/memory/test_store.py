from __future__ import annotations

import time

import numpy as np
import pytest

from stackmind.memory import (
    DecayPolicy,
    Memory,
    MemoryConfig,
    MemoryStoreError,
    RecallRanking,
    load_embedder,
    read_trace,
)
from stackmind.memory.forgetting import DAY
from stackmind.memory.store import _COMPACT_SUFFIX, COLLECTION
from stackmind.settings import Settings
from stackmind.stack import Frame


def test_embedder_is_offline_unit_length_and_loaded_once(memory: Memory) -> None:
    vecs = np.array(memory.embed(["a cat sleeps on the mat", "a kitten naps on the rug", "stock prices fell"]))
    assert vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
    assert load_embedder() is load_embedder()


def test_frame_keeps_kind_value_provenance_and_episode(memory: Memory) -> None:
    frame = Frame(kind="thought", text="Pairs that make 24: 3*8, 4*6, 2*12", value=0.8,
                  provenance={"stack": "game24", "step": 3})
    id_ = memory.store(frame, owner="alice", episode="ep-1")
    memory.store("Unrelated: the tram stops at Kirchplatz", owner="alice")
    [r] = memory.recall("which products equal 24?", owner="alice", k=1)
    assert r.id == id_ and r.text == frame.text
    assert (r.kind, r.value, r.episode, r.owner) == ("thought", 0.8, "ep-1", "alice")
    assert r.provenance == {"stack": "game24", "step": 3}
    assert 0.3 < r.similarity <= 1.0
    pushed = r.to_frame()
    assert pushed.kind == "observation" and pushed.provenance["memory_id"] == id_


def test_same_text_is_one_memory_updated_in_place(memory: Memory) -> None:
    a = memory.store("The user's timezone is CET", owner="alice", value=0.3)
    memory.recall("timezone", owner="alice", k=1)  # one use
    first = memory.recall("timezone", owner="alice", k=1, touch=False)[0]
    b = memory.store("The user's timezone is CET", owner="alice", value=0.9, episode="ep-2")
    assert a == b and memory.count() == 1
    again = memory.recall("timezone", owner="alice", k=1, touch=False)[0]
    assert (again.value, again.episode, again.uses) == (0.9, "ep-2", 1)
    assert again.created == first.created
    events = [e["event"] for e in read_trace(memory.trace_path)]
    assert events == ["store", "update"]


def test_store_many_dedupes_within_a_batch(memory: Memory) -> None:
    ids = memory.store_many(["x is 1", "y is 2", "x is 1"], owner="alice", kind="observation")
    assert ids[0] == ids[2] and memory.count() == 2


def test_touch_counts_uses(memory: Memory) -> None:
    memory.store("Espresso needs 9 bar of pressure", owner="alice")
    assert memory.recall("coffee pressure", owner="alice", k=1)[0].uses == 0
    assert memory.recall("coffee pressure", owner="alice", k=1, touch=False)[0].uses == 1


def test_value_reranks_near_ties(settings: Settings) -> None:
    texts = {"The team meeting is on Tuesday at noon.": 0.05, "The team meeting is Tuesday at 12:00.": 1.0}
    query = "When is the team meeting?"
    with Memory(settings, MemoryConfig(ranking=RecallRanking(value_weight=0.0))) as m:
        for t, v in texts.items():
            m.store(t, owner="alice", value=v)
        by_similarity = m.recall(query, owner="alice", k=2, touch=False)
    assert abs(by_similarity[0].similarity - by_similarity[1].similarity) < 0.15
    with Memory(settings, MemoryConfig(ranking=RecallRanking(value_weight=0.3))) as m:
        by_score = m.recall(query, owner="alice", k=2, touch=False)
    assert by_score[0].text == "The team meeting is Tuesday at 12:00."
    assert [r.score for r in by_score] == sorted((r.score for r in by_score), reverse=True)


def test_kinds_filter(memory: Memory) -> None:
    memory.store("Goal: plan a trip to Rome", owner="alice", kind="goal")
    memory.store("Conclusion: trains to Rome are cheaper booked early", owner="alice", kind="conclusion")
    got = memory.recall("Rome trip", owner="alice", k=5, kinds=["conclusion"])
    assert [r.kind for r in got] == ["conclusion"]
    with pytest.raises(MemoryStoreError, match="unknown kinds"):
        memory.recall("Rome", owner="alice", kinds=["secret"])


def test_bad_input_is_refused_with_a_reason(memory: Memory) -> None:
    with pytest.raises(MemoryStoreError, match="empty memory"):
        memory.store("   ", owner="alice")
    with pytest.raises(MemoryStoreError, match="unknown memory kind"):
        memory.store("x", owner="alice", kind="rumour")
    with pytest.raises(MemoryStoreError, match="k must be"):
        memory.recall("x", owner="alice", k=0)
    with pytest.raises(MemoryStoreError, match="non-empty query"):
        memory.recall("  ", owner="alice")


def test_forget_demotes_then_drops_and_the_trace_keeps_everything(settings: Settings) -> None:
    policy = DecayPolicy(half_life_days=30, threshold=0.05, grace_days=1)
    with Memory(settings, MemoryConfig(decay=policy, compact_after=1000)) as m:
        keep = m.store("Valuable: the deploy key rotates on the 1st", owner="alice", value=0.9)
        drop = m.store("Trivia: it rained on Monday", owner="alice", value=0.1)
        now = time.time()
        assert m.forget(now=now).removed == []  # in grace, nothing fresh is forgotten

        soon = m.forget(now=now + 10 * DAY)
        assert soon.demoted == 2 and soon.removed == []

        later = now + 60 * DAY  # recency 0.25: 0.9 -> 0.225 kept, 0.1 -> 0.025 dropped
        dry = m.forget(dry_run=True, now=later)
        assert [c.id for c in dry.removed] == [drop] and dry.removed[0].text.startswith("Trivia")
        assert m.count() == 2

        report = m.forget(now=later)
        assert [c.id for c in report.removed] == [drop] and not report.compacted
        assert m.count() == 1
        assert [r.id for r in m.recall("what was the weather on Monday", owner="alice", k=5)] == [keep]
        assert m.stats().removed_since_compaction == 1

    events = list(read_trace(settings.memory_dir / "trace.jsonl"))
    stored = {e["id"]: e["text"] for e in events if e["event"] == "store"}
    forgotten = [e for e in events if e["event"] == "forget"]
    assert stored[drop] == "Trivia: it rained on Monday"
    assert [e["id"] for e in forgotten] == [drop] and forgotten[0]["text"] == stored[drop]


def test_compaction_rebuilds_without_losing_or_reembedding(settings: Settings) -> None:
    with Memory(settings, MemoryConfig(compact_after=2)) as m:
        m.store_many([f"note {i}: the code for locker {i} is {i * 7}" for i in range(6)], owner="alice",
                           value=0.01)
        m.store("Important: locker 99 is mine", owner="alice", value=1.0)
        report = m.forget(now=time.time() + 5 * DAY)
        assert len(report.removed) == 6 and report.compacted
        assert m.count() == 1 and m.stats().removed_since_compaction == 0
        assert [c.name for c in m._client.list_collections()] == [m.collection_name("alice")]
        [r] = m.recall("which locker is mine", owner="alice", k=3)
        assert r.text == "Important: locker 99 is mine" and r.similarity > 0.4


def test_interrupted_compaction_is_recovered_on_open(settings: Settings) -> None:
    with Memory(settings) as m:
        m.store("Survives a crash mid-compaction", owner="alice")
        name = m.collection_name("alice")
        # A crash after the staging copy was made but before the swap: the original wins.
        m._client.create_collection(name + _COMPACT_SUFFIX)
    with Memory(settings) as m:
        assert [c.name for c in m._client.list_collections()] == [name]
        assert m.count() == 1
        # A crash after the original was dropped: the complete staging copy becomes the collection.
        m._collection("alice").modify(name=name + _COMPACT_SUFFIX)
    with Memory(settings) as m:
        assert [c.name for c in m._client.list_collections()] == [name]
        assert m.recall("crash", owner="alice", k=1)[0].text == "Survives a crash mid-compaction"


def test_memories_persist_across_reopen(settings: Settings, memory_mode: str) -> None:
    with Memory(settings) as m:
        m.store("Persisted across restarts", owner="alice")
    with Memory(settings) as m:
        assert m.recall("restarts", owner="alice", k=1)[0].text == "Persisted across restarts"
        st = m.stats()
    assert (st.mode, st.count, st.owners, st.trace_events) == (memory_mode, 1, {"alice": 1}, 1)


@pytest.mark.single_mode
def test_a_shared_collection_from_the_old_layout_is_split_by_owner(settings: Settings) -> None:
    """Before a collection per owner, every owner's memories shared one collection, filtered by owner."""
    import chromadb

    from stackmind.memory.embedder import MiniLMEmbedding

    path = settings.memory_dir / "chroma"
    path.mkdir(parents=True)
    client = chromadb.PersistentClient(path=str(path), settings=chromadb.Settings(anonymized_telemetry=False))
    old = client.create_collection(COLLECTION, embedding_function=MiniLMEmbedding(),
                                   configuration={"hnsw": {"space": "cosine"}})
    texts = {"alice": ["Alice parks on level 3"], "bob": ["Bob parks on level 5", "Bob likes tea"]}
    for owner, items in texts.items():
        old.add(ids=[f"{owner}-{i}" for i in range(len(items))], documents=items,
                metadatas=[{"owner": owner, "kind": "conclusion", "value": 0.5, "uses": 0, "created": 1.0,
                            "last_used": 1.0, "episode": "", "provenance": "{}", "retention": 0.5} for _ in items])
    del old, client
    with Memory(settings) as m:
        names = {c.name for c in m._client.list_collections()}
        assert names == {m.collection_name("alice"), m.collection_name("bob")}
        assert (m.count("alice"), m.count("bob")) == (1, 2)
        assert [r.text for r in m.recall("where do I park", owner="alice", k=5)] == ["Alice parks on level 3"]


def test_store_batch_embeds_many_owners_at_once_and_keeps_them_apart(memory: Memory) -> None:
    ids = memory.store_batch([("alice", "Alice's bike is blue"), ("bob", "Bob's bike is red"),
                              ("alice", "Alice's car is green"), ("alice", "Alice's bike is blue")])
    assert ids[0] == ids[3] and len(set(ids)) == 3  # the same text twice is one memory
    assert (memory.count("alice"), memory.count("bob")) == (2, 1)
    assert [r.text for r in memory.recall("what colour is my bike", owner="bob", k=5)] == ["Bob's bike is red"]
    memory.recall("bike", owner="alice", k=5)  # a use
    memory.store_batch([("alice", "Alice's bike is blue")], value=0.9)  # an update: no new memory, uses kept
    [bike] = [r for r in memory.recall("bike colour", owner="alice", k=5, touch=False) if "bike" in r.text]
    assert bike.value == 0.9 and bike.uses == 1 and memory.count("alice") == 2
