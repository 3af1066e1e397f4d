"""Time to the first visible reply and to the full answer, through the real bot, the fake Bot API
over HTTP and the embedded model (default chat settings unless overridden by STACKMIND_CHAT_*).

    python tests/fakes/measure_latency.py [N_QUESTIONS]

Prints one JSON line per question and a summary: seconds from the user's message reaching the
fake server to the bot's first sendMessage (first visible text), and to the final edit that
carries the 👍/👎 buttons (full answer), with the reply's length in tokens.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.bot_runner import RunningBot  # noqa: E402
from fakes.telegram_server import FakeTelegram  # noqa: E402
from stackmind.interfaces.chat import ChatSettings  # noqa: E402
from stackmind.llm import load_llm  # noqa: E402
from stackmind.settings import Settings  # noqa: E402

QUESTIONS = [
    "What is the capital of France, and why is it famous?",
    "Explain what a binary search does.",
    "Give me three tips for writing clear Python code.",
]


def main(n: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="stackmind-latency-"))
    settings = Settings(home=home)
    t0 = time.perf_counter()
    llm = load_llm(settings)
    print(json.dumps({"model": llm.name, "load_s": round(time.perf_counter() - t0, 1)}), flush=True)
    config = ChatSettings(memory=False)
    rows = []
    with FakeTelegram() as fake, RunningBot(fake, settings, llm, allowed=[1], chat=config):
        for q in (QUESTIONS * n)[:n]:
            start = time.monotonic()
            before = len(fake.messages(1))
            fake.send_text(1, q)
            first = fake.wait_for(lambda b=before: fake.messages(1)[b:], 900, "a first visible reply")[0]
            fake.wait_for(lambda m=first: m.buttons, 900, "the full answer")
            rows.append({
                "question": q, "first_visible_s": round(first.sent_at - start, 2),
                "full_answer_s": round(first.final_at - start, 2), "edits": len(first.edits),
                "reply_tokens": llm.count_tokens(first.text), "reply": first.text[:80],
            })
            print(json.dumps(rows[-1]), flush=True)
    summary = {
        "n": len(rows), "max_reply_tokens": config.max_reply_tokens, "max_steps": config.max_steps,
        "median_first_visible_s": statistics.median(r["first_visible_s"] for r in rows),
        "median_full_answer_s": statistics.median(r["full_answer_s"] for r in rows),
        "median_reply_tokens": statistics.median(r["reply_tokens"] for r in rows),
    }
    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
