"""How the loop acts on a reply: `Agent.act` takes the reply as text, so these tests need no model;
the tools they call are the real ones (the sandbox runs the Python)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stackmind.agent import Agent, GoalError, _close_tool_state, _Run, default_tools
from stackmind.settings import Settings
from stackmind.stepformat import Action, Final, Thought
from stackmind.tools import ToolContext
from stackmind.trace import Episode, Step


@pytest.fixture
def agent_run(settings: Settings) -> Iterator[tuple[Agent, _Run]]:
    agent = Agent(settings, tools=default_tools(settings))
    ctx = ToolContext(settings)
    run = _Run(Episode(goal="g"), ctx, agent.step_format(), None, None)
    yield agent, run
    _close_tool_state(ctx, keep=set())


def test_an_action_runs_its_tool_and_observes_what_it_printed(agent_run) -> None:  # type: ignore[no-untyped-def]
    agent, run = agent_run
    r = agent.act("Thought: compute it\nAction: @python(print(17 * 23))", run)
    assert isinstance(r.step, Action) and r.ok and r.answer is None
    assert (r.observation or "").strip() == "391"


def test_a_final_answer_is_the_answer(agent_run) -> None:  # type: ignore[no-untyped-def]
    agent, run = agent_run
    r = agent.act("Final answer: 391", run)
    assert isinstance(r.step, Final) and r.answer == "391" and r.observation is None


def test_a_final_answer_that_is_a_call_answers_with_what_the_call_printed(agent_run) -> None:  # type: ignore[no-untyped-def]
    agent, run = agent_run
    r = agent.act("Final answer: @python(print(2 ** 10))", run)
    assert r.ok and r.answer == "1024" and isinstance(r.step, Action)
    r = agent.act("Final answer: @python(print(1 / 0))", run)
    assert not r.ok and r.answer is None and "ZeroDivisionError" in (r.observation or "")  # no answer from a failure


def test_a_thought_is_a_step_with_nothing_run(agent_run) -> None:  # type: ignore[no-untyped-def]
    agent, run = agent_run
    r = agent.act("Thought: the product is large", run)
    assert isinstance(r.step, Thought) and r.answer is None and r.observation is None


def test_a_reply_outside_the_format_is_reported_not_guessed(agent_run) -> None:  # type: ignore[no-untyped-def]
    """Only a backend that enforced no grammar can produce these; they are never taken as an answer."""
    agent, run = agent_run
    for reply in ("391", "Action: @nosuch(1)", "[goal] What is 17 * 23?"):
        r = agent.act(reply, run)
        assert r.step is None and not r.ok and r.answer is None
        assert "not one step" in (r.observation or "")


def test_an_empty_goal_is_refused(settings: Settings) -> None:
    agent = Agent(settings, tools=default_tools(settings))

    class Counter:
        def count_tokens(self, text: str) -> int:
            return len(text) // 4

    agent.llm = Counter()  # type: ignore[assignment]
    with pytest.raises(GoalError, match="empty"):
        agent.check_goal("   ")
    with pytest.raises(GoalError, match="tokens"):
        agent.check_goal("word " * 5000)
    assert agent.check_goal("  What is 2 + 2?  ") == "What is 2 + 2?"


def test_frames_are_valued_by_the_value_model_when_it_is_trusted(agent_run, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The stack is weighted by what was learned: a trusted value model values each frame a step
    pushes; without one, the frame kind's prior does (the cold start)."""
    from stackmind.agent import PRIOR
    from stackmind.stack import Stack
    from stackmind.storage import SQLiteStackStore

    agent, run = agent_run
    result = agent.act("Thought: compute\nAction: @python(print(6 * 7))", run)
    stack = Stack(SQLiteStackStore(":memory:"), "s")
    stack.push("goal", "What is 6 * 7?", value=1.0)
    agent._push_step(stack, result, run)
    assert [(f.kind, f.value) for f in stack.frames()[1:]] == [(k, PRIOR[k]) for k in ("thought", "action", "observation")]
    assert {f.provenance["valued_by"] for f in stack.frames()[1:]} == {"prior"}

    class Learned:
        version = "v0007"

        def score(self, goal: str, states: list) -> list[float]:  # type: ignore[type-arg]
            return [0.1 * len(states[0].thoughts)]  # depends on what the state holds

    monkeypatch.setattr(agent, "_trusted_value_model", lambda: Learned())
    stack.clear()
    agent._push_step(stack, result, run)
    assert [f.value for f in stack.frames()] == [0.1, 0.2, 0.3]
    assert {f.provenance["valued_by"] for f in stack.frames()} == {"value model v0007"}


class _CutBackend:
    """A backend whose replies the token limit cuts inside their action (it says so, as llama.cpp does),
    the first ``cut`` times it is asked; then it answers."""

    name = "cut"

    def __init__(self, cut: int) -> None:
        self.cut = cut
        self.requests: list[object] = []

    def generate(self, request):  # type: ignore[no-untyped-def]
        from stackmind.llm.base import Completion

        self.requests.append(request)
        if len(self.requests) <= self.cut:
            return [Completion(["Action: @python(# add them\n# add them\n# add them"], 10, 8,
                               finish_reasons=["length"]) for _ in request.prompts]
        return [Completion(["Final answer: 499999500000"], 10, 8, finish_reasons=["stop"])
                for _ in request.prompts]

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)


def _plain_agent(settings: Settings, backend: object, resamples: int = 2) -> Agent:
    """The loop alone on ``backend``: no demonstrations, memory, policies or learning."""
    from stackmind.llm import LLM

    return Agent(settings.model_copy(update={"demos": 0, "memory": False, "policies": False, "learn": False,
                                             "resamples": resamples}),
                 llm=LLM(backend), tools=default_tools(settings))  # type: ignore[arg-type]


def test_a_step_the_token_limit_cut_is_sampled_again(settings: Settings) -> None:
    backend = _CutBackend(cut=2)
    ep = _plain_agent(settings, backend).run("Add the numbers below a million.", max_steps=2)
    assert ep.answer == "499999500000" and len(ep.steps) == 1
    assert ep.steps[0].meta.get("resampled") == ["cut", "cut"] and not ep.steps[0].meta.get("format_error")
    # the first try is greedy; a resample at temperature 0 would be cut the same way
    temps = [r.temperature for r in backend.requests]  # type: ignore[attr-defined]
    assert temps[0] == 0.0 and all(t > 0 for t in temps[1:])
    assert len({r.seed for r in backend.requests}) == 3  # type: ignore[attr-defined]


def test_a_step_cut_every_time_is_dropped_and_said_so(settings: Settings) -> None:
    backend = _CutBackend(cut=100)
    ep = _plain_agent(settings, backend).run("Add the numbers below a million.", max_steps=2)
    first = ep.steps[0]
    assert first.meta.get("format_error") and first.meta.get("resampled") == ["cut", "cut"]
    assert "ran past its" in (first.observation or "") and "3 times" in first.observation
    assert len(backend.requests) == 6  # two steps, each tried three times


class _RepeatingBackend:
    """Greedy, it writes the same failing call again; sampled, it writes another step."""

    name = "repeating"

    def __init__(self) -> None:
        self.requests: list[object] = []

    def generate(self, request):  # type: ignore[no-untyped-def]
        from stackmind.llm.base import Completion

        self.requests.append(request)
        text = ("Action: @python(print(undefined_name))" if request.temperature == 0
                else "Action: @python(print(6 * 7))" if "42" not in str(request.prompts[0]) else "Final answer: 42")
        return [Completion([text], 10, 8, finish_reasons=["stop"]) for _ in request.prompts]

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)


def test_a_step_that_repeats_the_last_one_is_sampled_again_before_it_runs(settings: Settings) -> None:
    backend = _RepeatingBackend()
    ep = _plain_agent(settings, backend).run("What is six times seven? Answer with the number.", max_steps=4)
    assert ep.answer == "42"
    first, second = ep.steps[0], ep.steps[1]
    assert "NameError" in (first.observation or "") and not first.meta.get("resampled")
    # the greedy repeat was not run again: the sampled step was
    assert second.action == "@python(print(6 * 7))" and second.observation == "42"
    assert second.meta.get("resampled") == ["repeat"]
    assert [r.temperature for r in backend.requests][:3] == [0.0, 0.0, 0.7]  # type: ignore[attr-defined]


def test_a_repeat_every_sample_makes_is_not_run_again_and_the_next_step_answers(settings: Settings) -> None:
    """Seen on word problems: the same failing program, sampled again and again, ran to the step budget
    (250 s a goal, no answer). It is not run again, and the next step is asked as the final answer."""
    class Stuck(_RepeatingBackend):
        def generate(self, request):  # type: ignore[no-untyped-def]
            from stackmind.llm.base import Completion

            self.requests.append(request)
            final_only = (request.grammar or "").startswith("root ::= final\n")
            text = "Final answer: 42" if final_only else "Action: @python(print(undefined_name))"
            return [Completion([text], 10, 8, finish_reasons=["stop"]) for _ in request.prompts]

    backend = Stuck()
    ep = _plain_agent(settings, backend, resamples=1).run("What is six times seven? Answer with the number.",
                                                          max_steps=6)
    assert ep.answer == "42" and len(ep.steps) == 3
    first, again, final = ep.steps
    assert "NameError" in (first.observation or "") and again.meta.get("resampled") == ["repeat"]
    assert "NameError" not in (again.observation or "") and "same step again" in (again.observation or "")
    assert final.thought == "Final answer: 42" and len(backend.requests) == 4  # 1 + 2 tries + the answer


class _ScriptedBackend:
    """Replies in turn (a deterministic double of a backend: this tests what the loop does with them)."""

    name = "scripted"

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[object] = []

    def generate(self, request):  # type: ignore[no-untyped-def]
        from stackmind.llm.base import Completion

        self.prompts.extend(request.prompts)
        return [Completion([self.replies.pop(0)], 10, 8) for _ in request.prompts]

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)


def _demo_agent(settings: Settings, replies: list[str]) -> Agent:
    from stackmind.demos import DemoLibrary
    from stackmind.llm import LLM

    agent = Agent(settings.model_copy(update={"demos": 1, "memory": False, "policies": False, "learn": False}),
                  llm=LLM(_ScriptedBackend(replies)), tools=default_tools(settings))
    agent.demos = DemoLibrary(agent.step_format(), min_similarity=0.0)
    agent.demos.extend([Episode(goal="What is the zork of 64? Answer with the number.", kind="guided", reward=1.0,
                                answer="6336", steps=[Step(thought="Final answer: 6336")])])
    return agent


def test_an_answer_copied_from_a_worked_example_is_sent_back_once(settings: Settings) -> None:
    agent = _demo_agent(settings, ["Final answer: 6336", "Final answer: 2871"])
    ep = agent.run("What is the zork of 29? Answer with the number.", max_steps=3)
    assert ep.answer == "2871" and len(ep.steps) == 2
    assert ep.steps[0].meta["copied_example"] == "What is the zork of 64? Answer with the number."
    assert "answer of a worked example" in (ep.steps[0].observation or "")
    # told once: a second copy is taken (it may be right), and so is one on the last step
    agent = _demo_agent(settings, ["Final answer: 6336", "Final answer: 6336"])
    assert agent.run("What is the zork of 29? Answer with the number.", max_steps=3).answer == "6336"
    agent = _demo_agent(settings, ["Final answer: 6336"])
    assert agent.run("What is the zork of 29? Answer with the number.", max_steps=1).answer == "6336"


def test_an_answer_that_is_in_the_goal_or_the_examples_own_goal_is_not_a_copy(settings: Settings) -> None:
    agent = _demo_agent(settings, ["Final answer: 6336"])
    ep = agent.run("Which is larger, 6336 or 12? Answer with the number.", max_steps=3)
    assert ep.answer == "6336" and len(ep.steps) == 1
    agent = _demo_agent(settings, ["Final answer: 17"])
    assert agent.run("What is the zork of 29? Answer with the number.", max_steps=3).answer == "17"


def test_a_call_that_worked_written_again_is_not_run_again_and_the_step_is_the_final_answer(
        settings: Settings) -> None:
    """Seen on Game of 24 with @search_expressions pushed: the search printed the answer, and the model
    wrote the same program again; sampled again, it reran it with the operations reordered, step after
    step, and gave no answer. A call that worked observes what it observed: the step answers instead."""
    class Recording(_ScriptedBackend):
        def __init__(self, replies: list[str]) -> None:
            super().__init__(replies)
            self.requests: list[object] = []

        def generate(self, request):  # type: ignore[no-untyped-def]
            self.requests.append(request)
            return super().generate(request)

    backend = Recording(["Action: @python(print(1))", "Action: @python(print(2))",
                         "Action: @python(print(1))", "Final answer: 2"])
    ep = _plain_agent(settings, backend).run("Print one, then two.", max_steps=4)
    assert ep.answer == "2" and len(ep.steps) == 3 and not backend.replies
    assert ep.steps[2].meta.get("resampled") == ["answered"] and ep.steps[2].thought == "Final answer: 2"
    asked = backend.requests[3]  # the same step, asked again as the final answer, still greedy
    assert asked.grammar.startswith("root ::= final\n") and asked.temperature == 0.0  # type: ignore[attr-defined]
    assert not backend.requests[2].grammar.startswith("root ::= final\n")  # type: ignore[attr-defined]


def test_any_step_already_taken_that_failed_is_sampled_again(settings: Settings) -> None:
    backend = _ScriptedBackend(["Action: @python(print(1 / 0))", "Action: @python(print(2))",
                                "Action: @python(print(1 / 0))", "Action: @python(print(1))", "Final answer: 2"])
    ep = _plain_agent(settings, backend).run("Print one, then two.", max_steps=4)
    assert ep.answer == "2" and len(ep.steps) == 4 and not backend.replies
    assert ep.steps[2].meta.get("resampled") == ["repeat"] and ep.steps[2].observation == "1"


def _program_demo_agent(settings: Settings, replies: list[str]) -> tuple[Agent, _ScriptedBackend]:
    from stackmind.demos import DemoLibrary
    from stackmind.llm import LLM

    backend = _ScriptedBackend(replies)
    agent = Agent(settings.model_copy(update={"demos": 1, "memory": False, "policies": False, "learn": False}),
                  llm=LLM(backend), tools=default_tools(settings))
    agent.demos = DemoLibrary(agent.step_format(), min_similarity=0.0)
    agent.demos.extend([Episode(goal="How many days are there from 2021-02-03 to 2021-05-17? Answer with the number.",
                                kind="guided", reward=1.0, answer="103", steps=[Step(
                                    thought="Final answer: @python(import datetime\n"
                                            "print((datetime.date(2021, 5, 17) - datetime.date(2021, 2, 3)).days))")])])
    return agent, backend


def test_a_program_copied_from_a_worked_example_is_sampled_again_before_it_runs(settings: Settings) -> None:
    """The example's program with the example's dates answers the example, not this goal."""
    copied = ("Final answer: @python(import datetime\n"
              "print((datetime.date(2021, 5, 17) - datetime.date(2021, 2, 3)).days))")
    own = ("Final answer: @python(import datetime\n"
           "print((datetime.date(2030, 1, 9) - datetime.date(2030, 1, 2)).days))")
    agent, backend = _program_demo_agent(settings, [copied, own])
    ep = agent.run("How many days are there from 2030-01-02 to 2030-01-09? Answer with the number.", max_steps=3)
    assert ep.answer == "7" and len(ep.steps) == 1 and not backend.replies
    assert ep.steps[0].meta.get("resampled") == ["copy"]
    # the same program is no copy where the numbers are the goal's own (the example's goal asked again)
    agent, backend = _program_demo_agent(settings, [copied])
    ep = agent.run("How many days are there from 2021-02-03 to 2021-05-17? Answer with the number.", max_steps=3)
    assert ep.answer == "103" and ep.steps[0].meta.get("resampled") is None
    # a copy every sample makes is run as it is (it may be right), and an action is checked alike
    action = copied.replace("Final answer:", "Action:")
    agent, backend = _program_demo_agent(settings, [action] * 3 + ["Final answer: 103"])
    ep = agent.run("How many days are there from 2030-01-02 to 2030-01-09? Answer with the number.", max_steps=3)
    assert ep.steps[0].meta.get("resampled") == ["copy", "copy"] and (ep.steps[0].observation or "").strip() == "103"


def test_only_a_final_answer_streams_and_never_a_call_that_computes_it() -> None:
    from stackmind.agent import _AnswerStream

    for reply, shown in (("Thought: easy\nFinal answer: Hello there", "Hello there"),
                         ("Action: @python(print(1))", ""),
                         ("Final answer: @python(print(17 * 23))", "")):
        got: list[str] = []
        stream = _AnswerStream(got.append)
        for i in range(0, len(reply), 3):  # as the decoder hands it over, a few characters at a time
            stream.feed(0, 0, reply[i:i + 3])
        assert "".join(got) == shown


def test_a_resampled_answer_is_shown_only_where_it_goes_on_from_what_was_shown() -> None:
    """A step sampled again (its first reply was cut) must not show the two replies one after the other."""
    from stackmind.agent import _AnswerStream

    got: list[str] = []
    stream = _AnswerStream(got.append)
    for sample in ("Final answer: Hi! It is going", "Final answer: Hi there! It is going well.",
                   "Final answer: Hi! It is going well, thank you."):
        stream.restart()
        for i in range(0, len(sample), 4):
            stream.feed(0, 0, sample[i:i + 4])
    assert "".join(got) == "Hi! It is going well, thank you."  # the second sample diverged: held back


def test_a_copied_call_is_one_with_a_literal_the_goal_does_not_have() -> None:
    from stackmind.agent import _copied_call
    from stackmind.stepformat import StepFormat

    fmt = StepFormat.for_names({"python": "run Python"})
    view = ("[policy] strings_with_python: ...\n    Action: @python(print(''.join(sorted('pineapple'))))\n"
            "[goal] Sort the letters of 'zeppelin'. Answer with one word.")
    goal = "Sort the letters of 'zeppelin'. Answer with one word."
    assert _copied_call(fmt.parse("Action: @python(print(''.join(sorted('pineapple'))))"), goal, view)
    assert not _copied_call(fmt.parse("Action: @python(print(''.join(sorted('zeppelin'))))"), goal, view)
    assert not _copied_call(fmt.parse("Final answer: pineapple"), goal, view)  # answers: `_copied_example`
    # a call no example holds, or one whose every literal is the goal's, is the model's own
    assert not _copied_call(fmt.parse("Action: @python(print(sorted('pineapple')))"), goal, view)
    assert not _copied_call(fmt.parse("Action: @python(print(''.join(sorted('pineapple'))))"),
                            "Sort the letters of 'pineapple'.", view)
    # a piece of the example's program with its literals is a copy too (the import left out)
    assert _copied_call(fmt.parse("Action: @python(sorted('pineapple'))"), goal, view)


def test_an_answer_that_only_prints_its_words_is_not_a_computation() -> None:
    from stackmind.agent import _printed_literal
    from stackmind.stepformat import StepFormat

    fmt = StepFormat.for_names({"python": "run Python"})
    assert _printed_literal(fmt.parse("Final answer: @python(print('Paris is a beautiful city.'))"))
    assert _printed_literal(fmt.parse('Final answer: @python(print("Hello there"))'))
    assert not _printed_literal(fmt.parse("Final answer: @python(print('abc'[::-1]))"))
    assert not _printed_literal(fmt.parse("Final answer: @python(print(17 * 23))"))
    assert not _printed_literal(fmt.parse("Final answer: Paris is a beautiful city."))
    # asked again, the answer may only be words
    finals = [line for line in fmt.grammar(words_only=True).splitlines() if line.startswith("final ::=")]
    assert finals and '"@" tool' not in finals[0]


def test_a_long_answer_word_for_word_an_examples_is_not_held_as_copied() -> None:
    from stackmind.agent import _copied_example
    from stackmind.stack import Frame

    greeting = "Hi! It is going well, thank you. I am stackmind, an agent. What can I do for you?"
    frames = [Frame(kind="trajectory", text=f"Worked example. Goal: Hi there! How is it going?\n"
                                            f"    Final answer: {greeting}"),
              Frame(kind="trajectory", text="Worked example. Goal: What colour is a lime?\n    Final answer: green")]
    assert _copied_example(greeting, "Hello there!", frames) is None  # prose that fits a goal like its own
    assert _copied_example("green", "What colour is a cherry?", frames) == "What colour is a lime?"


def test_an_answer_cut_while_it_printed_its_words_is_asked_for_in_words(settings: Settings) -> None:
    """A description written as `@python(print('...` runs past the token limit: the step is sampled
    again with a grammar whose final answer is text only, and that answer is taken."""
    from stackmind.llm import LLM
    from stackmind.llm.base import Completion

    class Cutting(_ScriptedBackend):
        grammars: list[str | None] = []

        def generate(self, request):  # type: ignore[no-untyped-def]
            self.grammars.append(request.grammar)
            text = self.replies.pop(0)
            cut = text.endswith("...")
            return [Completion([text], 10, 8, finish_reasons=["length" if cut else "stop"])]

    backend = Cutting(["Final answer: @python(print('Paris is a city of light, of art and of ...",
                       "Final answer: Paris is a city of light, of art and of food."])
    agent = Agent(settings.model_copy(update={"demos": 0, "memory": False, "policies": False, "learn": False}),
                  llm=LLM(backend), tools=default_tools(settings))
    ep = agent.run("Describe Paris in a sentence.", max_steps=2)
    assert ep.answer == "Paris is a city of light, of art and of food." and not backend.replies
    assert ep.steps[0].meta.get("resampled") == ["cut"]
    assert '"@" tool' in (backend.grammars[0] or "") and '"@" tool' not in (backend.grammars[1] or "")


def test_a_thought_nearly_word_for_word_one_taken_is_sampled_again(settings: Settings) -> None:
    first = "Thought: To reply with exactly this line and nothing else, I should decide what the line is"
    near = "Thought: To reply with exactly this line and nothing else, I should decide what the line says"
    other = "Thought: The goal asks for one line, so I can write it out directly"
    backend = _ScriptedBackend([first, near, other, "Final answer: done"])
    ep = _plain_agent(settings, backend).run("Reply with exactly this line: done", max_steps=4)
    assert ep.answer == "done" and not backend.replies
    assert [s.thought for s in ep.steps] == [first, other, "Final answer: done"]
    assert ep.steps[1].meta.get("resampled") == ["repeat"]  # the near repeat was not taken
    assert not ep.steps[0].meta.get("resampled") and not ep.steps[2].meta.get("resampled")


def test_an_answer_written_as_an_action_printing_words_is_asked_for_as_words(settings: Settings) -> None:
    """Seen in chat: "Final answer: Action: @python(print('Paris is ...'))" was shown to the user as is."""
    backend = _ScriptedBackend(["Final answer: Action: @python(print('Paris is the capital of France.'))",
                                "Final answer: Paris is the capital of France."])
    ep = _plain_agent(settings, backend).run("What is the capital of France?", max_steps=2)
    assert ep.answer == "Paris is the capital of France." and not backend.replies
    assert ep.steps[0].meta.get("resampled") == ["literal"]


def test_a_call_every_try_copied_from_a_worked_example_is_asked_last_without_the_examples(settings: Settings) -> None:
    """Seen in chat: "What is the capital of France?" answered with the strings demo's own program."""
    copy = "Final answer: @python(print(64 * 99))"
    from stackmind.demos import DemoLibrary

    agent = _demo_agent(settings, [copy, copy, "Final answer: @python(print(29 * 99))"])
    agent.demos = DemoLibrary(agent.step_format(), min_similarity=0.0)
    agent.demos.extend([Episode(goal="What is the zork of 64? Answer with the number.", kind="guided", reward=1.0,
                                answer="6336", steps=[Step(thought=copy)])])
    backend = agent.llm.backend
    ep = agent.run("What is the zork of 29? Answer with the number.", max_steps=1)
    assert ep.answer == "2871" and ep.steps[0].meta.get("resampled") == ["copy", "copy"]
    shown = [str(p) for p in backend.prompts]
    assert "64 * 99" in shown[0] and "64 * 99" in shown[1] and "64 * 99" not in shown[2]  # the last try
    # the step is recorded with the view its reply was given (a training pair is exactly what the model saw)
    assert "[trajectory]" not in ep.steps[0].view and "[goal] What is the zork of 29?" in ep.steps[0].view


def test_a_goal_no_example_is_close_to_gets_the_fallback_demonstrations(settings: Settings) -> None:
    from stackmind.demos import DemoLibrary
    from stackmind.llm import LLM

    backend = _ScriptedBackend(["Final answer: 30", "Final answer: Leonardo da Vinci"])
    agent = Agent(settings.model_copy(update={"demos": 2, "memory": False, "policies": False, "learn": False}),
                  llm=LLM(backend), tools=default_tools(settings))
    agent.demos = DemoLibrary(agent.step_format(), min_similarity=0.99)  # nothing is close
    agent.demos.extend([
        Episode(goal="Who wrote Emma?", kind="guided", reward=1.0, answer="Jane Austen", id="demo-fact",
                steps=[Step(thought="Final answer: Jane Austen")], meta={"fallback": True}),
        Episode(goal="What is 3 * 4? Answer with the number.", kind="guided", reward=1.0, answer="12",
                steps=[Step(thought="Final answer: @python(print(3 * 4))")], id="demo-product",
                meta={"fallback": True}),
        Episode(goal="Name a colour.", kind="guided", reward=1.0, answer="red", id="demo-colour",
                steps=[Step(thought="Final answer: red")])])
    first = agent.run("How many legs do 5 spiders have?", max_steps=1)
    second = agent.run("Who painted the Mona Lisa?", max_steps=1)
    assert first.meta["demos"] == ["demo-product", "demo-fact"]  # the program nearest a goal with data
    assert second.meta["demos"] == ["demo-fact"]  # and none for a goal with nothing to compute
    a, b = backend.prompts
    assert a[-1]["content"].endswith("How many legs do 5 spiders have?")
    assert any("3 * 4" in m["content"] for m in a) and not any("3 * 4" in m["content"] for m in b)
    assert not any("Name a colour" in m["content"] for m in a + b)


def test_a_final_answer_call_that_failed_written_again_is_sampled_again(settings: Settings) -> None:
    """Seen on dates dev: "Final answer: @python(...)" raised ValueError, and the same program came back as
    the final answer and as an action, five steps running. The same call is the same step, however written."""
    backend = _ScriptedBackend(["Final answer: @python(print(1 / 0))", "Action: @python(print(1 / 0))",
                                "Final answer: @python(print(7))"])
    ep = _plain_agent(settings, backend).run("Print seven.", max_steps=3)
    assert ep.answer == "7" and len(ep.steps) == 2 and not backend.replies
    assert "ZeroDivisionError" in (ep.steps[0].observation or "")
    assert ep.steps[1].meta.get("resampled") == ["repeat"]
