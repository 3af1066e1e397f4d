"""Policy synthesis: the agent writes, grounds, and keeps or discards its own learning policies.

The fast tests use the real parser, checker, embedder and stores; where a step reads the model's
replies (drafting, repair), the replies are given as text to the function that reads them, so no
model double is needed. The end-to-end test uses the embedded model and is marked slow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from synthesis_episodes import HELDOUT, WRITTEN, episodes, goal
from typer.testing import CliRunner

from stackmind.learning.grounding import AgentTrial, Grounding, HeldoutTask, game24_task
from stackmind.learning.synthesize import (
    RoundReport,
    SynthesisConfig,
    apply_repairs,
    assemble,
    cluster,
    draft_candidates,
    evidence,
    load_episodes,
    name_question,
    read_name,
    repair_requests,
    settle,
    snake_name,
    surprises,
    synthesize_round,
    validate,
)
from stackmind.policies.library import PolicyLibrary, check, default_policy_dirs
from stackmind.policies.review import PolicyStore, ReviewError, atomic_write
from stackmind.settings import Settings
from stackmind.value import after_episode

BUNDLED = Path(__file__).resolve().parents[2] / "policies"


def _library() -> PolicyLibrary:
    return PolicyLibrary.load([BUNDLED])


def _lived(settings: Settings) -> None:
    """The fixture episodes as the agent would have left them: saved, labelled, RPEs logged."""
    for ep in episodes():
        ep.save(settings.episodes_dir)
        after_episode(settings, ep)


def _evidence(settings: Settings, config: SynthesisConfig):  # type: ignore[no-untyped-def]
    items = surprises(settings, load_episodes([settings.episodes_dir]), config.min_abs_rpe)
    ev = evidence(cluster(items, config.cluster_similarity)[0], config)
    assert not isinstance(ev, str), ev
    return ev


# ---- surprises, clusters, evidence ---------------------------------------------------------------

def test_surprises_cluster_and_split(settings: Settings) -> None:
    _lived(settings)
    config = SynthesisConfig()
    items = surprises(settings, load_episodes([settings.episodes_dir]), config.min_abs_rpe)
    assert items and all(s.source == "rpe-log" for s in items)  # read from the RPE log after_episode wrote
    clusters = cluster(items, config.cluster_similarity)
    big = clusters[0]
    assert {e.goal for e in big.episodes} == {goal(n) for n in WRITTEN + HELDOUT}
    ev = evidence(big, config)
    assert not isinstance(ev, str)
    written = {e.goal for e in ev.written_from}
    assert len(written) == 3 and not written & {t.goal for t in ev.heldout}  # held out: not written from
    assert all("100 - 1" in " ".join(fix) for _, fix in ev.fixes)  # the fix, not the failed attempt
    assert ev.errors and all("wrong" in e["error"] for e in ev.errors)
    assert isinstance(evidence(clusters[-1], config), str)  # the lone reverse-spelling surprise: too small


# ---- assembling and validating with the real parser -----------------------------------------------

def test_assembled_candidate_passes_check_and_problems_are_located(settings: Settings, tmp_path: Path) -> None:
    _lived(settings)
    config = SynthesisConfig()
    ev = _evidence(settings, config)
    lib = _library()
    pieces = {"name": "times_99_by_hundred", "description": "Write 99 as 100 - 1.", "target": "x99",
              "strategy": "Multiply by 100 {then} subtract."}
    policy, problems = validate(assemble(pieces, ev, config), lib)
    assert policy is not None and not problems
    assert policy.render_subgoal({"goal": "What is 3 * 99?"}).endswith("Goal: What is 3 * 99?")
    assert policy.trajectories[0].steps[-1].action.startswith("@times_99_by_hundred(")
    path = atomic_write(tmp_path / "p.policy.yaml", assemble(pieces, ev, config))
    assert check([path], known=list(lib)).ok

    for bad, expect in (("Multiply by 99", "must be one word"), ("simplify", "duplicate policy name"),
                        ("python", "name of a tool")):
        policy, problems = validate(assemble({**pieces, "name": bad}, ev, config), lib)
        assert policy is None
        assert any(expect in p.message and p.line == 3 for p in problems), problems
    policy, problems = validate(assemble({**pieces, "description": ""}, ev, config), lib)
    assert policy is None and any("description" in str(p) for p in problems)
    assert read_name("`@times_99()`") == "times_99"


# ---- repair, drop, never half-saved (scripted model) ------------------------------------------------

ADVICE = "Write 99 as 100 - 1, multiply by 100, subtract the number."


def _drafts(settings: Settings, name_reply: str) -> tuple[SynthesisConfig, PolicyLibrary, list[dict]]:  # type: ignore[type-arg]
    """Drafts from the model's replies, given as text (the replies a model could give)."""
    config, lib = SynthesisConfig(), _library()
    return config, lib, draft_candidates([_evidence(settings, config)], [ADVICE], ["multiplication by 99"],
                                         [name_reply], lib, config)


def test_rejected_name_goes_back_located_and_the_repair_is_judged_again(settings: Settings) -> None:
    _lived(settings)
    config, lib, drafts = _drafts(settings, "Times 99 trick")
    assert drafts[0]["policy"] is None and not drafts[0]["repaired"]
    asks = repair_requests(drafts)
    [(_, piece, messages)] = asks
    assert piece == "name"
    repair = messages[-1]["content"]
    assert "candidate.policy.yaml:3:7" in repair and "'Times 99 trick'" in repair  # the located problem went back
    assert name_question(ADVICE) in repair  # with the question it answers
    [d] = apply_repairs(drafts, asks, ["times_99_trick"], lib, config)
    assert d["repaired"] and d["policy"] is not None and d["policy"].name == "times_99_trick"
    assert d["pieces"]["description"] == ADVICE and d["pieces"]["target"] == "multiplication by 99"
    assert not repair_requests(_drafts(settings, "times_99_trick")[2])  # a valid first answer: no repair


def test_a_name_still_invalid_after_the_model_s_repair_is_rewritten(settings: Settings) -> None:
    _lived(settings)
    config, lib, drafts = _drafts(settings, "Times 99 trick")
    [d] = apply_repairs(drafts, repair_requests(drafts), ["times 99 trick!"], lib, config)
    assert d["repaired"] and d["policy"] is not None and d["policy"].name == "times_99_trick"
    assert snake_name("9 lives") == "p_9_lives" and snake_name("!!!") == ""


def test_candidate_rejected_twice_is_dropped_and_nothing_is_saved(settings: Settings) -> None:
    _lived(settings)
    config, lib, drafts = _drafts(settings, "99 trick")
    apply_repairs(drafts, repair_requests(drafts), ["!!!"], lib, config)
    report = RoundReport("r1", dry_run=False)
    settle(settings, drafts, report, llm=None, config=config)  # nothing to ground: the model is never asked
    [cand] = report.candidates
    assert cand.status == "dropped" and cand.problems and cand.repaired
    store = PolicyStore(settings)
    assert not store.active() and not store.candidates.exists()
    assert [e.status for e in store.entries()] == ["dropped"]
    # The episodes it came from are used: the next round does not write the same lesson again (and,
    # with nothing left to write, asks no model).
    again = synthesize_round(settings, None, library=lib)
    assert again.surprises == 1 and not again.candidates  # only the unrelated surprise is left


def test_atomic_write_leaves_old_file_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "learned" / "a.v1.policy.yaml"
    atomic_write(target, "old\n")

    def crash(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write(target, "new and half-written\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["a.v1.policy.yaml"]  # no temp file left


# ---- versions, retirement, review ------------------------------------------------------------------

def _candidate(store: PolicyStore, name: str, text: str) -> int:
    v = store.next_version(name)
    store.save_candidate(name, v, text, {"provenance": {"name": name, "version": v}, "grounding": {"n": 1}})
    return v


def test_versions_never_overwrite_and_review_accepts_and_rejects(settings: Settings) -> None:
    store = PolicyStore(settings)
    text = (BUNDLED / "simplify.policy.yaml").read_text().replace("name: simplify", "name: shorter")
    v1 = _candidate(store, "shorter", text)
    store.keep("shorter", v1, {"version": v1})
    v2 = _candidate(store, "shorter", text.replace("Restate", "Rewrite"))
    assert (v1, v2) == (1, 2)
    with pytest.raises(ReviewError):
        store.save_candidate("shorter", v2, text, {})  # candidates are never rewritten
    store.log("discarded", "shorter", v2, reason="no gain")
    assert {e.key: e.status for e in store.entries()} == {"shorter.v1": "kept", "shorter.v2": "discarded"}

    runner = CliRunner()
    from stackmind.interfaces.cli import app

    r = runner.invoke(app, ["policy", "review", "--accept", "shorter.v2", "--json"])
    assert r.exit_code == 0, r.output
    rows = {f"{c['name']}.v{c['version']}": c["status"] for c in json.loads(r.stdout)["candidates"]}
    assert rows == {"shorter.v1": "superseded", "shorter.v2": "accepted"}
    assert [p.name for p in store.active().values()] == ["shorter.v2.policy.yaml"]
    assert (store.retired / "shorter.v1.policy.yaml").is_file()  # the old version moved, not deleted

    lib = PolicyLibrary.load(default_policy_dirs(settings.home))  # kept policies load like human ones
    assert "shorter" in lib and "simplify" in lib

    r = runner.invoke(app, ["policy", "review", "--reject", "shorter"])
    assert r.exit_code == 0, r.output
    assert not store.active() and store.find("shorter").status == "rejected"
    r = runner.invoke(app, ["policy", "review", "--accept", "nosuch"])
    assert r.exit_code == 1 and "no synthesized policy" in r.output


def test_grounding_roi_and_tasks() -> None:
    g = Grounding("p", "t", tasks=[{}] * 4, reward_with=0.5, reward_without=0.25, success_with=2, success_without=1,
                  stack_tokens=250, roi_threshold=2e-4)
    assert g.gain == 0.25 and g.roi == pytest.approx(1e-3) and g.keep
    assert not Grounding.from_dict({**g.to_dict(), "roi_threshold": 2e-3}).keep
    assert not Grounding("p", "t", tasks=[{}], stack_tokens=10, roi_threshold=0).keep  # no gain: never kept
    t = HeldoutTask("What is 3 * 99?", "297")
    assert t.reward("so 300 - 3 = 297.\nFinal answer: 297") == 1.0 and t.reward("Final answer: 298") == 0.0
    g24 = game24_task([4, 6, 8, 8])
    assert g24.reward("Final answer: (8 - 6) * 8 + 4 * 2 = 24") == 0.0
    assert g24.reward("Final answer: 4 * 6 * (8 / 8) = 24") == 1.0
    assert HeldoutTask.from_dict(g24.to_dict()) == g24


def test_a_suite_goal_is_a_task_with_its_own_verifier_whatever_the_episode_s_outcome() -> None:
    """An episode of the goal suite (as `bench goals` and `learn` record it) grounds with the suite's
    verifier, so a failed practice attempt is a held-out task too; its policy examples match alike."""
    from stackmind.learning.grounding import goal_task
    from stackmind.learning.synthesize import _match_for, task_of
    from stackmind.tasks.goals import load_goals
    from stackmind.trace import Episode

    date = next(g for g in load_goals("dates") if g.check.kind == "date")
    failed = Episode(goal=date.text, answer="1999-01-01", reward=0.0, meta={"goal_id": date.id, "family": "dates"})
    task = task_of(failed)
    assert task == goal_task(date) and task.check == "goal" and task.origin == date.id
    assert task.reward(f"Final answer: {date.answer}") == 1.0 and task.reward("Final answer: 1999-01-01") == 0.0
    assert HeldoutTask.from_dict(task.to_dict()) == task
    assert _match_for(task) == {"kind": "exact"}
    number = next(g for g in load_goals("lists", "dev") if g.check.kind == "numeric")
    assert _match_for(goal_task(number)) == {"kind": "numeric"}
    # not of the suite (or an unknown id): as before, only a success with its answer is a task
    assert task_of(Episode(goal="What is 2 + 2?", answer="5", reward=0.0)) is None
    assert task_of(Episode(goal="x", answer="4", reward=0.0, meta={"goal_id": "lists-dev-999", "family": "lists"})) is None
    with pytest.raises(Exception, match="check kind"):
        HeldoutTask("g", "a", "goal", spec={"kind": "nonsense"})


def test_consolidation_reads_learned_policies(settings: Settings) -> None:
    from stackmind.consolidate.config import ConsolidateConfig
    from stackmind.consolidate.run import _with_learned_policies

    config = ConsolidateConfig()
    assert _with_learned_policies(settings, config) is config  # nothing learned yet
    store = PolicyStore(settings)
    store.learned.mkdir(parents=True)
    assert store.learned in _with_learned_policies(settings, config).policies_dirs


# ---- end to end, with the embedded model -------------------------------------------------------

@pytest.mark.slow
def test_agent_writes_a_policy_that_checks_and_improves_heldout_tasks(settings: Settings, embedded_llm) -> None:  # type: ignore[no-untyped-def]
    _lived(settings)
    report = synthesize_round(settings, embedded_llm, library=_library(),
                              trial=AgentTrial(settings, embedded_llm, max_steps=2))
    kept = [c for c in report.candidates if c.status == "kept"]
    assert kept, report.to_dict()
    cand = kept[0]
    path = Path(cand.file)
    assert path.parent == settings.home / "policies" / "learned" and path.name.endswith(".v1.policy.yaml")
    assert check([path], known=list(_library())).ok  # what `stackmind policy check` says
    g = cand.grounding
    assert g["success_with"] > g["success_without"] and g["roi"] >= SynthesisConfig().roi_threshold
    written = {goal(n) for n in WRITTEN}
    assert {t["goal"] for t in g["tasks"]} and not written & {t["goal"] for t in g["tasks"]}
    prov = PolicyStore(settings).provenance(cand.name)
    assert prov["model"] == embedded_llm.name and prov["episodes"] and prov["grounding"]["keep"]
    assert cand.pieces["name"] == cand.name and cand.pieces["description"]  # the model's own words
    lib = PolicyLibrary.load(default_policy_dirs(settings.home))
    from stackmind.policies.slow import sft_examples

    assert any(e.source.startswith(cand.name) for e in sft_examples([lib[cand.name]]))
