"""The gate: is the candidate adapter at least as good as the one it would replace?

Measured on the same base model, for the current adapter (or the bare base model when none is
promoted) and the candidate:

- held-out loss: mean token loss on the assistant turns of the held-out split (never trained on);
- held-out exact match: greedy answers to held-out prompts compared with their last assistant turn;
- checks from hooks, each ``check(llm) -> score in [0, 1]`` (higher is better): the policies' tests,
  a Game of 24 dev slice, ...

The candidate passes when its loss is at most ``(1 + margin)`` times the current one and no score is
lower by more than ``margin``; with nothing held out to measure (no held-out example, no check) it
does not pass: a gate that measured nothing cannot say the candidate is not worse. Before any of that, `verify_adapter` checks that the saved adapter
loads, reproduces the trained model's logits, and changes the base model's output (the notes record
weight transfers that silently did nothing).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackmind.consolidate.config import ConsolidateConfig
from stackmind.consolidate.dataset import Example
from stackmind.errors import StackmindError
from stackmind.llm.base import LLM

GateCheck = Callable[[LLM], float]
LLMFor = Callable[[Path | None], LLM]  # a peft adapter's folder (None: the base model) -> a model to check
ProgressFn = Callable[[str], None]


class AdapterVerificationError(StackmindError, RuntimeError):
    """The saved adapter does not load, or loads but changes nothing."""


@dataclass
class Scores:
    loss: float | None = None
    exact_match: float | None = None
    checks: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "exact_match": self.exact_match, "checks": self.checks}


@dataclass
class GateResult:
    current: Scores
    candidate: Scores
    passed: bool
    reasons: list[str]
    margin: float
    verification: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current.to_dict(), "candidate": self.candidate.to_dict(), "passed": self.passed,
                "reasons": self.reasons, "margin": self.margin, "verification": self.verification,
                "skipped": self.skipped}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateResult:
        def scores(s: dict[str, Any]) -> Scores:
            return Scores(s.get("loss"), s.get("exact_match"), dict(s.get("checks", {})))
        return cls(scores(d["current"]), scores(d["candidate"]), d["passed"], d["reasons"], d["margin"],
                   d.get("verification", {}), d.get("skipped", {}))


def decide(current: Scores, candidate: Scores, margin: float,
           margins: dict[str, float] | None = None) -> tuple[bool, list[str]]:
    """Pass unless the candidate is worse than the current adapter by more than the margin (a check
    named in ``margins``: by more than its own)."""
    reasons: list[str] = []
    ok = True
    if candidate.loss is not None and current.loss is not None:
        if not math.isfinite(candidate.loss) or candidate.loss > current.loss * (1 + margin):
            ok = False
            reasons.append(f"held-out loss {candidate.loss:.4f} > {current.loss:.4f} x (1 + {margin})")
        else:
            reasons.append(f"held-out loss {candidate.loss:.4f} vs {current.loss:.4f}: ok")
    pairs = [("exact match", current.exact_match, candidate.exact_match)]
    pairs += [(name, current.checks.get(name), score) for name, score in candidate.checks.items()]
    for name, cur, cand in pairs:
        if cur is None or cand is None:
            continue
        tolerance = (margins or {}).get(name, margin)
        if cand < cur - tolerance - 1e-9:
            ok = False
            reasons.append(f"{name} {cand:.3f} < {cur:.3f} - {tolerance:g}")
        else:
            reasons.append(f"{name} {cand:.3f} vs {cur:.3f}: ok")
    if not reasons:
        ok = False
        reasons.append(NOTHING_HELD_OUT)
    return ok, reasons


NOTHING_HELD_OUT = ("nothing held out to measure (no held-out examples, no checks): not promoted; hold some "
                    "examples out (STACKMIND_CONSOLIDATE_HELDOUT_FRACTION, or `split: heldout` in a learning "
                    "policy) or configure a gate check (STACKMIND_CONSOLIDATE_GAME24_CSV)")


# ---- measuring ----------------------------------------------------------------------------------


def training_template(tokenizer: Any) -> str | None:
    """The chat template with ``{% generation %}`` markers that trl trains with (None: the tokenizer's own)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return None
    return get_training_chat_template(tokenizer)


def heldout_loss(model: Any, tokenizer: Any, examples: list[Example], max_length: int) -> float | None:
    """Mean token loss over the assistant turns of ``examples`` (None when there are none)."""
    import torch

    template = training_template(tokenizer)
    total, count = 0.0, 0
    for ex in examples:
        enc = tokenizer.apply_chat_template(ex.messages, chat_template=template, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids = enc["input_ids"][:max_length]
        mask = enc["assistant_masks"][:max_length]
        if sum(mask) == 0:
            continue
        input_ids = torch.tensor([ids], device=model.device)
        labels = torch.tensor([[t if m else -100 for t, m in zip(ids, mask, strict=True)]], device=model.device)
        with torch.inference_mode():
            logits = model(input_ids=input_ids).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                ignore_index=-100, reduction="sum")
        total += float(nll)
        count += int((labels[:, 1:] != -100).sum())
    return total / count if count else None


def exact_match(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int) -> float | None:
    """Share of held-out prompts whose greedy answer equals the expected last assistant turn."""
    import torch

    if not examples:
        return None
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(ex.prompt, tokenize=False, add_generation_prompt=True) for ex in examples]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                             top_k=None, pad_token_id=tokenizer.pad_token_id)
    answers = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    hits = sum(_same_answer(a, ex.target) for a, ex in zip(answers, examples, strict=True))
    return hits / len(examples)


def _same_answer(got: str, want: str) -> bool:
    def final(text: str) -> str:
        m = re.search(r"(?is)final answer\s*:\s*(.+)", text)
        return " ".join((m.group(1) if m else text).lower().split())
    return final(got) == final(want)


def evaluate(
    model_dir: Path,
    candidate: Path,
    current: Path | None,
    heldout: list[Example],
    config: ConsolidateConfig,
    *,
    checks: dict[str, GateCheck] | None = None,
    margins: dict[str, float] | None = None,
    llm_for: LLMFor | None = None,
    progress: ProgressFn | None = None,
) -> GateResult:
    """Verify the candidate, measure both sides, and decide. The checks run on ``llm_for(adapter)``
    (default: the transformers backend with the adapter), with the margins of ``margins``."""
    from peft import PeftModel

    from stackmind.consolidate.train import load_base, pick_device

    say = progress or (lambda _m: None)
    if not heldout and not checks:  # nothing to measure: refuse before loading two models to learn that
        say("gate: nothing held out to measure; the candidate is not promoted")
        return GateResult(Scores(), Scores(), False, [NOTHING_HELD_OUT], config.gate_margin)
    device = pick_device(config.device)
    base, tokenizer = load_base(model_dir, device)
    probe_path = candidate / "probe.json"
    probe = json.loads(probe_path.read_text()) if probe_path.is_file() else None
    base_probe = _probe(base, tokenizer, probe)
    model = PeftModel.from_pretrained(base, str(candidate), adapter_name="candidate")
    if current is not None:
        model.load_adapter(str(current), adapter_name="current")
    model.eval()
    verification = verify_loaded(model, tokenizer, probe, base_probe)

    sides: dict[str, Scores] = {}
    for side in ("current", "candidate"):
        say(f"gate: measuring the {side} adapter on {len(heldout)} held-out examples")
        if side == "candidate":
            model.set_adapter("candidate")
            ctx: Any = nullcontext()
        elif current is not None:
            model.set_adapter("current")
            ctx = nullcontext()
        else:
            ctx = model.disable_adapter()  # no promoted adapter: compare with the base model
        with ctx:
            sides[side] = Scores(
                loss=heldout_loss(model, tokenizer, heldout, config.max_length),
                exact_match=exact_match(model, tokenizer, heldout[: config.exact_match_examples],
                                        config.exact_match_max_tokens) if config.exact_match_examples else None,
            )
    del model, base
    skipped: dict[str, str] = {}
    llm_for = llm_for or (lambda path: _llm(model_dir, path, config))
    for name, check in (checks or {}).items():
        for side, path in (("current", current), ("candidate", candidate)):
            say(f"gate: {name} on the {side} adapter")
            try:
                llm = llm_for(path)
                try:
                    sides[side].checks[name] = float(check(llm))
                finally:
                    getattr(llm.backend, "close", lambda: None)()  # a llama.cpp context holds its memory
            except Exception as e:  # a broken check must not promote or crash the run: record it
                skipped[name] = f"{type(e).__name__}: {e}"
                break
        if name in skipped:
            for s in sides.values():
                s.checks.pop(name, None)
    passed, reasons = decide(sides["current"], sides["candidate"], config.gate_margin, margins)
    if not verification.get("changes_output", True):
        passed = False
        reasons.append("the candidate does not change the model's output: nothing was learned")
    return GateResult(sides["current"], sides["candidate"], passed, reasons, config.gate_margin, verification,
                      skipped)


def _probe(model: Any, tokenizer: Any, probe: dict[str, Any] | None) -> dict[str, Any] | None:
    from stackmind.consolidate.train import probe_logits

    if probe is None:
        return None
    return probe_logits(model, tokenizer, probe["messages"], probe["indices"])


def verify_loaded(model: Any, tokenizer: Any, probe: dict[str, Any] | None,
                  base_probe: dict[str, Any] | None) -> dict[str, Any]:
    """The reloaded candidate must give the trained model's logits, and differ from the base model's."""
    from stackmind.consolidate.train import probe_logits

    if probe is None or base_probe is None:
        return {"checked": False}
    model.set_adapter("candidate")
    loaded = probe_logits(model, tokenizer, probe["messages"], probe["indices"])["values"]
    to_trained = max(abs(a - b) for a, b in zip(loaded, probe["values"], strict=True))
    to_base = max(abs(a - b) for a, b in zip(loaded, base_probe["values"], strict=True))
    scale = max(1.0, max(abs(v) for v in probe["values"]))
    result = {"checked": True, "max_diff_to_trained": to_trained, "max_diff_to_base": to_base,
              "changes_output": to_base > 1e-4 * scale}
    if to_trained > 1e-2 * scale:
        raise AdapterVerificationError(
            f"the saved adapter does not reproduce the trained model (logits differ by {to_trained:.4g}): "
            "the weights were not saved or not loaded; the current adapter is left as it is")
    return result


def _llm(model_dir: Path, adapter: Path | None, config: ConsolidateConfig) -> LLM:
    from stackmind.llm.transformers import TransformersBackend

    return LLM(TransformersBackend(model_dir, device=config.device, adapter=adapter))


# ---- checks the gate can run ------------------------------------------------------------------


def game24_check(csv: Path, select: str = "0:10", max_tokens: int = 96) -> GateCheck:
    """Solve rate on a Game of 24 slice, answered in one greedy reply and verified exactly."""
    from stackmind.tasks.game24 import answer_expression, check_expression, load_puzzles

    puzzles = load_puzzles(csv, select)

    def check(llm: LLM) -> float:
        prompts = [[{"role": "user", "content": (
            f"Use the numbers {p.text} and + - * / (each number once) to make 24. "
            "Reply with one line: Final answer: <expression>")}] for p in puzzles]
        replies = llm.generate(prompts, max_tokens=max_tokens, temperature=0.0).first
        return sum(check_expression(answer_expression(r), p.numbers) for r, p in zip(replies, puzzles, strict=True)) / len(puzzles)

    return check
