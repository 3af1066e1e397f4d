"""Two workers, one deployment: real PostgreSQL, a real Chroma server, a real `stackmind serve` on the
embedded model, two `stackmind telegram` webhook worker processes behind the fake Bot API's round-robin,
then `stackmind consolidate` in a third process while the workers keep answering.

CI size: 4 users x 3 messages (STACKMIND_DEPLOY_USERS / STACKMIND_DEPLOY_MESSAGES for the full
20 x 50). Asserted: nothing lost (every message on its chat's stack once, every turn's reply delivered),
every reply in its own chat answering that chat's message, each chat's turns in order, both workers
answered turns, no user's memories reaching another, and after consolidation the model server
reports the promoted adapter loaded, a message sent meanwhile is answered, and the workers' next
requests ask for the new adapter (they find it on the server: nothing else is shared).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import httpx
import pytest
from fakes.deployment import Deployment, summary
from fakes.servers import ChromaServer, PostgresServer

USERS = [5000 + i for i in range(int(os.environ.get("STACKMIND_DEPLOY_USERS", "4")))]
MESSAGES = int(os.environ.get("STACKMIND_DEPLOY_MESSAGES", "3"))
# a 2-3 step LoRA run that promotes (tests/consolidate/test_run.py)
TINY_TRAINING = {
    "STACKMIND_CONSOLIDATE_LEARNING_RATE": "3e-3", "STACKMIND_CONSOLIDATE_RANK": "8",
    "STACKMIND_CONSOLIDATE_MAX_LENGTH": "640", "STACKMIND_CONSOLIDATE_BATCH_SIZE": "1",
    "STACKMIND_CONSOLIDATE_EXACT_MATCH_EXAMPLES": "1", "STACKMIND_CONSOLIDATE_EXACT_MATCH_MAX_TOKENS": "8",
    "STACKMIND_CONSOLIDATE_HELDOUT_FRACTION": "0", "STACKMIND_CONSOLIDATE_INIT": "fresh",
}


@pytest.mark.slow
@pytest.mark.server
def test_two_workers_share_one_bot_and_consolidation_hot_loads_while_they_answer(
    postgres_server: PostgresServer, chroma_server: ChromaServer, embedded_gguf: Path, tmp_path: Path,
) -> None:
    name = f"deploy_{secrets.token_hex(4)}"
    with Deployment(tmp_path / "deployment", postgres_server.create_database(name), chroma_server.url,
                    embedded_gguf, USERS, chroma_database=name) as d:
        d.start_model_server()
        d.start_workers(2)
        sent = d.send_round(MESSAGES)
        start = min(t for msgs in sent.values() for _, _, t in msgs)
        done = d.wait_answered(sent, timeout=60 + 6 * len(USERS) * MESSAGES)
        figures = summary(d.latencies(sent), len(USERS) * MESSAGES, done - start)

        # ---- nothing lost, right chat, in order ----
        for u in USERS:
            texts = [t for t, _, _ in sent[u]]
            assert d.goals(u) == texts, f"chat {u}: a message lost, repeated or out of order on its stack"
            turns = d.turns(u)
            assert [mid for mids, _ in turns for mid in mids] == [mid for _, mid, _ in sent[u]]
            for mids, reply in turns:
                assert reply.chat_id == u and reply.reply_to == mids[0]  # answers this chat's first queued message
            assert all(m.chat_id == u for m in d.fake.messages(u))
            assert all(e.meta.get("owner") == f"telegram:{u}" for e in d.chat_episodes(u))
        by_worker = d.answered_by()
        assert all(n > 0 for n in by_worker.values()), by_worker
        assert not d.fake.flood_violations, d.fake.flood_violations[:5]

        # ---- memory on the Chroma server: each user's own ----
        from stackmind.memory import Memory

        with Memory(d.reader_settings()) as memory:
            for u in USERS:
                mine = memory.recall("says m", owner=f"telegram:{u}", k=10)
                assert mine, f"no memories of user {u} on the Chroma server"
                assert all(r.owner == f"telegram:{u}" for r in mine)
                assert all(f"u{u} " in r.text for r in mine if "says" in r.text), [r.text for r in mine]

        # ---- consolidation in a third process while the workers answer ----
        for u in USERS[:2]:  # 👍 on a couple of answers: their episodes become training examples
            d.fake.press(u, d.finals(u)[0], d.finals(u)[0].buttons[0]["callback_data"])
        d.fake.wait_for(lambda: len(d.fake.callback_answers) >= 2, 60, "the thumbs answered")
        during = d.send_round(1, tag="during")
        result = d.consolidate("--max-steps", "2", "--json", **TINY_TRAINING)
        assert result.returncode == 0, result.stderr[-3000:]
        record = json.loads(result.stdout)
        assert record["outcome"].startswith("promoted"), record
        assert record.get("served"), record["notes"]
        models = httpx.get(d.model_url + "/models", timeout=10).json()["data"]
        assert record["served"] in [m["id"] for m in models]  # the model server hot-loaded it
        after = d.send_round(1, tag="after")
        d.wait_answered({u: during[u] + after[u] for u in USERS}, timeout=300)
        asked = httpx.get(d.model_url.removesuffix("/v1") + "/health", timeout=10).json()["requests"]
        assert asked.get(record["served"], 0) >= len(USERS), asked  # the workers answer with the new adapter
        assert all(w.alive() for w in d.workers)
    print("\nDEPLOY " + json.dumps({**figures, "workers": by_worker}))
