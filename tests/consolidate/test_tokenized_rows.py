"""The training rows are tokenized as the agent's prompts render them: the loss falls on the
completion's tokens only, and a row too long for max_length is left out (cut, it would lose its
completion), not truncated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stackmind.consolidate.train import TrainingDataError, tokenized_rows
from stackmind.settings import Settings


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from transformers import AutoTokenizer

    from stackmind.llm.embedded import ensure_model

    cache = Path(os.environ.get("STACKMIND_TEST_CACHE", Path.home() / ".cache" / "stackmind-test"))
    model_dir = ensure_model(Settings(home=tmp_path_factory.mktemp("home"), cache=cache))
    return AutoTokenizer.from_pretrained(str(Path(model_dir)))


def _row(user: str, reply: str) -> dict:
    return {"prompt": [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": user}],
            "completion": [{"role": "assistant", "content": reply}]}


def test_the_loss_mask_covers_the_completion_and_its_end_of_turn(tokenizer) -> None:  # noqa: ANN001
    rows = [_row("Goal: What is 6 * 7?", "Thought: multiply\nAction: @python(print(6 * 7))"),
            _row("Goal: Say hello.", "Final answer: hello there")]
    examples, too_long = tokenized_rows(rows, tokenizer, 640)
    assert too_long == 0 and len(examples) == 2
    for row, ex in zip(rows, examples, strict=True):
        assert len(ex["input_ids"]) == len(ex["completion_mask"])
        learned = tokenizer.decode([t for t, m in zip(ex["input_ids"], ex["completion_mask"], strict=True) if m])
        assert learned.startswith(row["completion"][0]["content"]) and "<|im_end|>" in learned
        seen = tokenizer.decode([t for t, m in zip(ex["input_ids"], ex["completion_mask"], strict=True) if not m])
        assert row["prompt"][1]["content"] in seen and "assistant" in seen  # the prompt, up to the reply's turn
        assert row["completion"][0]["content"] not in seen
        # the ids are the agent's chat template, prompt and reply
        whole = tokenizer.apply_chat_template([*row["prompt"], *row["completion"]], tokenize=False)
        assert tokenizer.decode(ex["input_ids"]) == whole


def test_a_row_too_long_is_left_out_and_counted(tokenizer) -> None:  # noqa: ANN001
    rows = [_row("long " * 700, "Final answer: 1"), _row("short", "Final answer: 2")]
    examples, too_long = tokenized_rows(rows, tokenizer, 640)
    assert too_long == 1 and len(examples) == 1
    assert "Final answer: 2" in tokenizer.decode(examples[0]["input_ids"])
    with pytest.raises(TrainingDataError, match="raise STACKMIND_CONSOLIDATE_MAX_LENGTH"):
        tokenized_rows(rows[:1], tokenizer, 640)
