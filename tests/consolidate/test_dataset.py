from __future__ import annotations

from pathlib import Path

from stackmind.consolidate import ConsolidateConfig, Example, build_dataset, step_examples, step_format
from stackmind.consolidate.dataset import in_heldout
from stackmind.settings import Settings
from stackmind.trace import Episode, Step


def test_an_episode_becomes_one_example_per_step_in_the_agents_own_format(settings: Settings) -> None:
    ep = Episode(goal="What is 6 * 7?", answer="42", reward=1.0, kind="guided", steps=[
        Step(thought="Compute it with a program.", action="@python(print(6 * 7))", observation="42"),
        Step(thought="Final answer: 42"),
    ])
    fmt = step_format(settings)
    first, second = step_examples(ep, fmt, "guided")
    assert first.target == "Thought: Compute it with a program.\nAction: @python(print(6 * 7))"
    assert second.target == "Final answer: 42"
    assert second.prompt[0] == {"role": "system", "content": fmt.system_prompt()}  # the agent's system prompt
    assert second.prompt[-1]["content"].startswith("Observation: 42")  # the world's words: never trained on
    assert second.prompt == fmt.messages("[goal] What is 6 * 7?\n[thought] Compute it with a program.\n"
                                         "[action] @python(print(6 * 7))\n[observation] 42", ep.goal)
    assert first.prompt_key == second.prompt_key  # a goal's steps are on one side of the split


def test_only_successful_episodes_and_guided_traces_are_trained(settings: Settings, config: ConsolidateConfig,
                                                               tmp_path: Path, write_episode) -> None:
    write_episode(settings.episodes_dir, "good goal", 1.0)
    write_episode(settings.episodes_dir, "failed goal", 0.0)
    write_episode(settings.episodes_dir, "unrated goal", None)
    write_episode(tmp_path / "traces", "guided goal", None, kind="guided")
    ds, problems = build_dataset(settings, config, trained_keys=set(), replay_pool=[])
    assert problems == []
    goals = {e.prompt[1]["content"] for e in ds.train if e.source in ("episode", "guided")}
    assert goals == {"Current goal: good goal", "Current goal: guided goal"}
    # the policy's slow part: two train examples, weight 2 each; its heldout example is held out
    assert ds.counts["new_policy"] == 2
    rows = [r for r in ds.training_rows() if "secret word" in r["prompt"][-1]["content"]]
    assert len(rows) == 4 and all(r["completion"] == [{"role": "assistant", "content": "Final answer: zanzibar"}]
                                  for r in rows)
    assert [e.prompt[-1]["content"] for e in ds.heldout] == ["Current goal: Which secret word opens the harbour gate?"]


def test_duplicates_are_dropped_and_replay_follows_the_ratio(settings: Settings, config: ConsolidateConfig,
                                                            write_episode) -> None:
    for i in range(3):
        write_episode(settings.episodes_dir, f"old goal {i}", 1.0)
    write_episode(settings.episodes_dir, "old goal 0", 1.0)  # same content, another id: one example
    first, _ = build_dataset(settings, config, trained_keys=set(), replay_pool=[])
    assert first.counts["new_episode"] == 3
    trained = {e.key for e in first.train}
    write_episode(settings.episodes_dir, "new goal", 1.0)
    config = config.model_copy(update={"replay_ratio": 1.0})
    second, _ = build_dataset(settings, config, trained_keys=trained, replay_pool=[])
    assert second.counts["new"] == 1
    assert second.counts["replay"] == 1  # one replayed per new example
    assert {e.source for e in second.train} == {"episode", "replay"}
    # replay works from the stored pool when the episodes are gone
    for p in settings.episodes_dir.glob("*.yaml"):
        if "new goal" not in p.read_text():
            p.unlink()
    third, _ = build_dataset(settings, config, trained_keys=trained, replay_pool=first.train)
    assert third.counts["replay"] == 1


def test_heldout_split_is_deterministic_and_by_goal() -> None:
    a = Example([{"role": "user", "content": "Current goal: Same  Prompt"}, {"role": "assistant", "content": "x"}],
                "episode")
    b = Example([{"role": "user", "content": "[thought] t\nCurrent goal: same prompt"},
                 {"role": "assistant", "content": "y"}], "episode")
    assert a.key != b.key and a.prompt_key == b.prompt_key
    keys = [Example([{"role": "user", "content": f"p{i}"}, {"role": "assistant", "content": "a"}], "e").prompt_key
            for i in range(2000)]
    share = sum(in_heldout(k, 0.2) for k in keys) / len(keys)
    assert 0.17 < share < 0.23
    assert [in_heldout(k, 0.2) for k in keys] == [in_heldout(k, 0.2) for k in keys]


def test_a_broken_trace_is_reported_not_fatal(settings: Settings, config: ConsolidateConfig, write_episode) -> None:
    write_episode(settings.episodes_dir, "good goal", 1.0)
    (settings.episodes_dir / "bad.trace.yaml").write_text("goal: [unclosed\n")
    ds, problems = build_dataset(settings, config, trained_keys=set(), replay_pool=[])
    assert ds.counts["new_episode"] == 1
    assert len(problems) == 1 and "bad.trace.yaml:" in problems[0]


WORKED_POLICY = """\
name: days_with_datetime
description: Compute calendar questions with datetime.
parameters:
  - name: problem
    description: the question
subgoal: "Compute it with @python: {problem}"
motivation:
  - state: "[goal] 3 October 2031 is which day of its year?"
    error: the day was counted in the head
    aim: improve
    target: day of the year
training: {slow: {weight: 1.0}}
examples:
  - goal: "3 October 2031 is which day of its year? Answer with the number."
    response: |
      Thought: Compute it with datetime.
      Action: @python(from datetime import date; print(date(2031, 10, 3).timetuple().tm_yday))
      Observation: 276
      Final answer: 276
    answer: "276"
  - goal: "What is 6 * 7?"
    response: "Final answer: 42"
    answer: "42"
"""


def test_a_policy_example_written_as_a_worked_trajectory_trains_each_step_on_the_stack_it_saw(
        settings: Settings, tmp_path: Path) -> None:
    """A slow example whose response is several steps becomes one example per step: the action on the
    goal alone, the answer only after the observation is on the stack. Crammed into one reply (as
    before), it taught the model to answer at once with the example's answer, observation invented."""
    from stackmind.consolidate.dataset import policy_examples

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "days.policy.yaml").write_text(WORKED_POLICY)
    examples, problems = policy_examples(settings, ConsolidateConfig(policies_dirs=[tmp_path / "p"]))
    assert not problems
    act, answer, direct = examples
    assert act.target == ("Thought: Compute it with datetime.\n"
                          "Action: @python(from datetime import date; print(date(2031, 10, 3).timetuple().tm_yday))")
    assert "276" not in act.prompt[-1]["content"]  # the answer is nowhere before the program ran
    assert answer.target == "Final answer: 276" and answer.prompt[-1]["content"].startswith("Observation: 276")
    assert direct.target == "Final answer: 42"  # a one-step response stays one example
    assert all("Observation:" not in ex.target for ex in examples)
    assert {ex.origin for ex in examples} == {"days_with_datetime"}
