"""Conversations with the real embedded model: each message a run of the agent on its chat's stack,
chats decoded side by side by the backend, bursts answered together, fairness, rewards; and
`stackmind chat` in a terminal, driven through stdin."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from stackmind.interfaces.chat import ChatRef, ChatSettings, Conversations
from stackmind.settings import Settings
from stackmind.storage import SQLiteStackStore
from stackmind.trace import Episode

TINY = ChatSettings(max_reply_tokens=48, max_steps=2, render_budget_tokens=1024, memory=False)


def ref(n: int) -> ChatRef:
    return ChatRef(stack=f"test-{n}", owner=f"test:{n}")


@pytest.mark.slow
def test_chats_are_batched_and_each_reply_lands_in_its_own_chat(settings: Settings, embedded_llm) -> None:  # noqa: ANN001
    backend = embedded_llm.backend
    before = backend.stats["max_batch"] = 0

    async def main() -> list:
        async with Conversations(settings, embedded_llm, config=TINY) as conv:
            return await asyncio.gather(*(conv.say(ref(i), f"Say hello to number {i}.") for i in range(4)))

    replies = asyncio.run(main())
    assert backend.stats["max_batch"] >= 2 > before  # chats shared the backend's decode batches
    store = SQLiteStackStore(settings.db_path)
    for i, reply in enumerate(replies):
        assert reply.text.strip() and reply.messages == [f"Say hello to number {i}."]
        frames = store.frames(f"test-{i}")
        assert [(f.kind, f.text) for f in frames] == [("goal", f"Say hello to number {i}."),
                                                       ("conclusion", reply.text)]
        episode = Episode.load(settings.episodes_dir / f"{reply.episode_id}.trace.yaml")
        assert episode.stack == f"test-{i}" and episode.meta["owner"] == f"test:{i}"


@pytest.mark.slow
def test_a_chat_is_warm_before_its_first_message(settings: Settings, embedded_llm) -> None:  # noqa: ANN001
    async def main() -> Conversations:
        async with Conversations(settings, embedded_llm, config=TINY) as conv:
            return conv

    embedded_llm.backend.clear_cache()  # no prefix left by an earlier test
    conv = asyncio.run(main())
    assert conv.agent.demos is not None and conv.agent.demos._vectors is not None  # embedder loaded, demos embedded
    # and the system prompt was read: a step's prompt finds it in the prefix cache
    fmt = conv.agent.step_format()
    gen = embedded_llm.generate([fmt.messages("", "Hello!")], max_tokens=1, temperature=0.0)
    assert gen.usage.cached_tokens >= embedded_llm.count_tokens(fmt.system_prompt())


@pytest.mark.slow
def test_a_burst_is_answered_together_and_nothing_is_lost(settings: Settings, embedded_llm) -> None:  # noqa: ANN001
    async def main() -> list:
        async with Conversations(settings, embedded_llm, config=TINY) as conv:
            first = asyncio.create_task(conv.say(ref(1), "one"))
            await asyncio.sleep(0)  # 'one' is being answered; the rest arrive meanwhile
            while "test-1" in conv._waiting or "test-1" not in conv._running:
                await asyncio.sleep(0.01)
            rest = [asyncio.create_task(conv.say(ref(1), w)) for w in ("two", "three", "four")]
            return [await first, *[await r for r in rest]]

    r1, r2, r3, r4 = asyncio.run(main())
    assert r1.messages == ["one"]
    assert r2.episode_id == r3.episode_id == r4.episode_id != r1.episode_id
    assert r2.messages == ["two", "three", "four"] and r2.leader and not r3.leader and not r4.leader
    goals = [f.text for f in SQLiteStackStore(settings.db_path).frames("test-1") if f.kind == "goal"]
    assert goals == ["one", "two\nthree\nfour"]


@pytest.mark.slow
def test_a_new_chat_is_not_kept_waiting_by_a_long_answer(settings: Settings, embedded_llm) -> None:  # noqa: ANN001
    config = ChatSettings(max_reply_tokens=160, max_steps=1, render_budget_tokens=1024, memory=False)
    seen: dict[str, float] = {}

    async def main() -> tuple:
        async with Conversations(settings, embedded_llm, config=config) as conv:
            async def mark(name: str, text: str) -> None:
                seen.setdefault(name, time.perf_counter())

            long = asyncio.create_task(conv.say(ref(1), "Count from 1 to 300, separated by commas.",
                                                lambda t: mark("long", t)))
            while "long" not in seen and not long.done():
                await asyncio.sleep(0.01)
            assert "long" in seen, await long  # its answer streams (the reply shows what it did instead)
            short = await conv.say(ref(2), "Hi!", lambda t: mark("short", t))
            return await long, short

    long, short = asyncio.run(main())
    # The second chat joined the running decode batch: it finished before the long answer did.
    assert short.total_s < long.total_s
    assert long.first_visible_s is not None and long.first_visible_s < long.total_s


@pytest.mark.slow
def test_rate_records_the_reward_and_refuses_other_chats(settings: Settings, embedded_llm) -> None:  # noqa: ANN001
    async def main():  # noqa: ANN202
        async with Conversations(settings, embedded_llm, config=TINY) as conv:
            reply = await conv.say(ref(1), "Hello")
            episode = conv.rate(reply.episode_id, 1.0, chat=ref(1))
            with pytest.raises(PermissionError):
                conv.rate(reply.episode_id, -1.0, chat=ref(2))
            return reply, episode

    reply, episode = asyncio.run(main())
    assert episode.reward == 1.0
    assert Episode.load(settings.episodes_dir / f"{reply.episode_id}.trace.yaml").reward == 1.0


@pytest.mark.slow
def test_memory_is_recalled_for_its_owner_only(settings: Settings, embedded_llm) -> None:  # noqa: ANN001
    memory_mod = pytest.importorskip("stackmind.memory")
    config = TINY.model_copy(update={"memory": True})

    async def main():  # noqa: ANN202
        with memory_mod.Memory(settings) as memory:
            async with Conversations(settings, embedded_llm, config=config, memory=memory) as conv:
                await conv.say(ref(1), "My secret password is swordfish.")
                await conv.say(ref(2), "I like trains.")
                await conv.say(ref(2), "What is my secret password?")
                a = memory.recall("secret password", owner="test:1", k=5)
                b = memory.recall("secret password", owner="test:2", k=5)
                return a, b

    a, b = asyncio.run(main())
    assert any("swordfish" in r.text for r in a)
    assert b and not any("swordfish" in r.text for r in b) and all(r.owner == "test:2" for r in b)
    for path in settings.episodes_dir.glob("*.trace.yaml"):
        episode = Episode.load(path)
        if episode.stack == "test-2":
            assert "swordfish" not in str(episode.meta.get("recalled", ""))


@pytest.mark.slow
def test_terminal_chat_through_stdin(settings: Settings) -> None:
    script = "Hello there!\n/stack\n/good\n/policies\n/nope\n/forget\n/stack\n/quit\n"
    env = {**os.environ, "STACKMIND_CHAT_MEMORY": "false"}
    proc = subprocess.run(
        [sys.executable, "-c", "from stackmind.interfaces import cli, cli_chat; cli.main()",
         "chat", "--max-tokens", "48", "--name", "t1"],
        input=script, capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "stackmind> " in out
    answer = out.split("stackmind> ", 1)[1].splitlines()[0].strip()
    assert answer
    assert "[goal 1.00] Hello there!" in out
    assert "Noted: reward +1" in out
    assert "I do not know /nope" in out
    assert "Cleared 2 frames" in out and out.rstrip().endswith("The stack is empty.")
    episodes = [Episode.load(p) for p in settings.episodes_dir.glob("*.trace.yaml")]
    assert len(episodes) == 1 and episodes[0].reward == 1.0 and episodes[0].answer == answer
    assert episodes[0].stack == "chat-t1"


@pytest.mark.slow
def test_terminal_chat_computes_what_needs_a_tool(settings: Settings) -> None:
    """`stackmind chat`: a product too large to know is worked out in the sandbox, and it is right."""
    env = {**os.environ, "STACKMIND_CHAT_MEMORY": "false"}
    proc = subprocess.run(
        [sys.executable, "-c", "from stackmind.interfaces import cli, cli_chat; cli.main()", "chat", "--name", "t2"],
        input="What is 123456789 * 987654321?\n/quit\n", capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = proc.stdout.split("stackmind> ", 1)[1].splitlines()[0]
    assert "121932631112635269" in answer.replace(",", ""), proc.stdout[-1500:]
    [episode] = [Episode.load(p) for p in settings.episodes_dir.glob("*.trace.yaml")]
    assert any((s.action or "").startswith("@python(") and "121932631112635269" in (s.observation or "")
               for s in episode.steps)
