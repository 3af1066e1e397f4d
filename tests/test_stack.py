from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.servers import Backend

from stackmind.stack import Frame, Stack, StackError, StackStore
from stackmind.storage import PostgresStackStore, SQLiteStackStore, open_store


@pytest.fixture
def store(backend: Backend) -> Iterator[StackStore]:
    s = open_store(backend.settings())
    assert isinstance(s, PostgresStackStore if backend.name == "postgresql" else SQLiteStackStore)
    yield s
    s.close()


ROOT = Path(__file__).resolve().parents[1]


def words(n: int) -> str:
    return " ".join(["w"] * n)


def test_push_pop_peek_replace(store: StackStore) -> None:
    st = Stack(store, "a")
    g = st.push("goal", "make 24", value=1.0, episode="e1")
    t = st.push("thought", "try 4 * 6")
    assert st.peek().id == t.id and st.peek().text == "try 4 * 6"
    r = st.replace(t.id, text="try 3 * 8", value=0.9)
    assert [f.text for f in st.frames()] == ["make 24", "try 3 * 8"]
    assert st.frames()[1].value == pytest.approx(0.9) and r.tokens > 0
    assert st.pop().text == "try 3 * 8"
    assert st.pop().provenance == {"episode": "e1"} and g.id is not None
    with pytest.raises(StackError, match="empty"):
        st.pop()
    with pytest.raises(StackError, match="no frame"):
        st.replace(12345, text="x")
    with pytest.raises(ValueError, match="unknown frame kind"):
        Frame(kind="banana", text="x")


def test_stacks_are_separate_and_listed(store: StackStore) -> None:
    Stack(store, "chat-1").push("goal", "a")
    Stack(store, "chat-2").push("goal", "b")
    Stack(store, "chat-2").push("thought", "c")
    assert store.stacks() == {"chat-1": 1, "chat-2": 2}
    assert [f.text for f in Stack(store, "chat-1").frames()] == ["a"]


def test_persists_across_reopen(backend: Backend) -> None:
    s = open_store(backend.settings())
    Stack(s, "x").push("goal", "remember me", source={"nested": [1, 2]})
    s.close()
    s2 = open_store(backend.settings())
    assert [(f.text, f.provenance) for f in Stack(s2, "x").frames()] == [("remember me", {"source": {"nested": [1, 2]}})]
    s2.close()


def test_render_keeps_goals_order_and_budget(store: StackStore) -> None:
    st = Stack(store, "r", count_tokens=lambda text: len(text.split()))
    st.push("goal", words(5), value=0.0)  # goals stay even with value 0
    st.push("thought", "low " + words(9), value=0.1)
    st.push("observation", "high " + words(9), value=0.9)
    st.push("thought", "mid " + words(9), value=0.5)
    frames = st.frames()
    budget = frames[0].tokens + frames[2].tokens + frames[3].tokens
    chosen = st.select(budget)
    assert [f.kind for f in chosen] == ["goal", "observation", "thought"]
    assert [f.id for f in chosen] == sorted(f.id for f in chosen)  # stack order kept
    assert sum(f.tokens for f in chosen) <= budget
    assert "low" not in st.render(budget) and "high" in st.render(budget)
    # A budget smaller than the goal still keeps the goal, and nothing else.
    assert [f.kind for f in st.select(1)] == ["goal"]
    # A big budget keeps everything, in order.
    assert [f.text.split()[0] for f in st.select(10_000)] == ["w", "low", "high", "mid"]


def test_render_prefers_recent_when_values_tie(store: StackStore) -> None:
    st = Stack(store, "t", count_tokens=lambda text: 10)
    st.push("goal", "g")
    for i in range(5):
        st.push("thought", f"t{i}", value=0.5)
    assert [f.text for f in st.select(30)] == ["g", "t3", "t4"]


_WRITER = textwrap.dedent(
    """
    import sys
    from stackmind.settings import Settings
    from stackmind.stack import Stack
    from stackmind.storage import open_store
    st = Stack(open_store(Settings()), "k")  # STACKMIND_HOME / STACKMIND_DATABASE_URL from the test
    i = 0
    while True:
        f = st.push("thought", f"frame {i}")
        print(f.id, flush=True)  # acknowledged only after push returned
        if i % 3 == 2:
            st.replace(f.id, text=f"frame {i} edited")
            print("r", f.id, flush=True)
        i += 1
    """
)


def _record(line: str, acked: list[int], edited: set[int]) -> None:
    if line.startswith("r "):
        edited.add(int(line.split()[1]))
    elif line.strip().isdigit():
        acked.append(int(line))


@pytest.mark.parametrize("kill_after", [1, 40, 300])
def test_sigkill_loses_nothing_acknowledged(backend: Backend, kill_after: int) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    acked: list[int] = []
    edited: set[int] = set()
    while len(acked) < kill_after:
        line = proc.stdout.readline()
        assert line, "writer died before it was killed"
        _record(line, acked, edited)
    proc.send_signal(signal.SIGKILL)
    for line in proc.stdout.read().splitlines():  # acknowledged just before the kill
        _record(line, acked, edited)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    store = open_store(backend.settings())
    have = {f.id: f.text for f in store.frames("k")}
    store.close()
    missing = [i for i in acked if i not in have]
    assert not missing, f"acknowledged frames lost after SIGKILL: {missing[:5]}"
    assert all(have[i].endswith("edited") for i in edited)


def test_concurrent_pops_take_each_frame_once_from_the_top(backend: Backend) -> None:
    import threading

    store = open_store(backend.settings())
    try:
        st = Stack(store, "shared")
        ids = [st.push("thought", f"t{i}").id for i in range(60)]
        popped: list[list[int]] = [[], [], []]

        def pop_all(k: int) -> None:
            while True:
                try:
                    popped[k].append(Stack(store, "shared").pop().id)
                except StackError:
                    return

        workers = [threading.Thread(target=pop_all, args=(k,)) for k in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert sorted(sum(popped, [])) == sorted(ids)  # each frame once, none lost
        assert all(p == sorted(p, reverse=True) for p in popped)  # every worker pops from the top
    finally:
        store.close()
