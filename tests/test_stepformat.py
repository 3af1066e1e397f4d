"""The step format without a model: prompts, parsing, training targets, replay of hand-written traces."""

from __future__ import annotations

import pytest

from stackmind.stepformat import Action, Final, FormatError, StepFormat, Thought
from stackmind.trace import Episode, Step

FMT = StepFormat.for_names({"python": "run Python", "decompose": "learning policy: split a goal"})


@pytest.mark.parametrize("reply, kind", [
    ("Thought: the product is large", Thought),
    ("Final answer: 391", Final),
    ("Final answer: line one\nline two", Final),
    ("Action: @python(print(17 * 23))", Action),
    ("Thought: compute it\nAction: @python(x = 3\nprint(x * 2))", Action),
    ("Thought: I know it\nFinal answer: Paris", Final),
    ("Action: @decompose(goal=\"plan a trip (two days)\")", Action),
    ("Action: @python(print(')' + \"(\"))", Action),
])
def test_parse_reads_every_form(reply: str, kind: type) -> None:
    step = FMT.parse(reply)
    assert isinstance(step, kind)
    assert FMT.completion(step) == reply  # the training target is exactly the reply


@pytest.mark.parametrize("reply", [
    "391",  # no form at all
    "Action: @unknown(x)",  # a name that does not exist
    "Action: @python(print(1)",  # unclosed
    "Action: @python(print(1)) and more",  # something after the call
    "Thought: a\nb",  # a thought is one line
    "Final answer: ",  # empty answer
    "[goal] What is 2 + 2?",  # a copy of the stack
])
def test_parse_refuses_what_is_not_one_step(reply: str) -> None:
    with pytest.raises(FormatError):
        FMT.parse(reply)


def test_parsed_parts() -> None:
    step = FMT.parse("Thought: compute\nAction: @python(print(2 ** 10))")
    assert isinstance(step, Action) and step.thought == "compute"
    assert step.call.name == "python" and step.call.raw == "print(2 ** 10)"
    final = FMT.parse("Thought: done\nFinal answer: 1024")
    assert isinstance(final, Final) and final.answer == "1024" and final.thought == "done"


def test_messages_hold_the_tools_the_context_and_the_goal_last() -> None:
    msgs = FMT.messages("[policy] add carefully\n[goal] What is 2 + 2?", "What is 2 + 2?")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "@python: run Python" in msgs[0]["content"] and "@decompose" in msgs[0]["content"]
    assert msgs[1]["content"] == "[policy] add carefully\nCurrent goal: What is 2 + 2?"


def test_messages_give_the_agents_steps_as_its_turns_and_observations_as_the_worlds() -> None:
    view = ("[trajectory] Worked example. Goal: x\n    Final answer: 1\n[goal] What is 2 * 3?\n[thought] compute\n"
            "[action] @python(print(2 * 3))\n[observation] 6\n[thought] it is six")
    msgs = FMT.messages(view, "What is 2 * 3?")
    assert msgs[1:] == [
        {"role": "user", "content": "Current goal: x"},  # a worked example is its own conversation
        {"role": "assistant", "content": "Final answer: 1"},
        {"role": "user", "content": "Current goal: What is 2 * 3?"},
        {"role": "assistant", "content": "Thought: compute\nAction: @python(print(2 * 3))"},
        {"role": "user", "content": "Observation: 6\nCurrent goal: What is 2 * 3?"},
        {"role": "assistant", "content": "Thought: it is six"},
        {"role": "user", "content": "Current goal: What is 2 * 3?"},
    ]


def test_a_policy_or_example_pushed_after_the_goal_is_context_before_it() -> None:
    """Fast learning pushes a policy and its examples on top of the goal; the model is shown them
    before the goal, as it is shown demonstrations, not as the last thing it reads."""
    view = ("[goal] What day is 2028-03-07?\n[policy] Learning policy @dates: compute dates\n"
            "[trajectory] Worked example. Goal: What day is 2089-07-14?\n    Final answer: @python(print(1))\n"
            "[action] @python(print(2))\n[observation] 2")
    msgs = FMT.messages(view, "What day is 2028-03-07?")
    assert msgs[1:] == [
        {"role": "user", "content": "Current goal: What day is 2089-07-14?"},
        {"role": "assistant", "content": "Final answer: @python(print(1))"},
        {"role": "user", "content": "[policy] Learning policy @dates: compute dates\nCurrent goal: What day is 2028-03-07?"},
        {"role": "assistant", "content": "Action: @python(print(2))"},
        {"role": "user", "content": "Observation: 2\nCurrent goal: What day is 2028-03-07?"},
    ]


def test_a_final_answer_that_is_a_call_is_one_whole_tool_call() -> None:
    assert isinstance(FMT.parse("Final answer: @python(print(2 ** 10))"), Final)
    for reply in ("Final answer: @python(print(1))) extra", "Final answer: @python(print(1)",
                  "Final answer: @nosuch(x)"):
        with pytest.raises(FormatError, match="one call of a tool"):
            FMT.parse(reply)
    # a small model writes "Final answer: Action: @python(...)": that answer is the call, read as one
    step = FMT.parse("Final answer: Action: @python(print('Paris'))")
    assert isinstance(step, Final) and step.answer == "@python(print('Paris'))"
    assert FMT.parse("Final answer: Action @python(print('Paris'))") == step
    with pytest.raises(FormatError, match="one call of a tool"):
        FMT.parse("Final answer: Action: @nosuch(x)")
    assert 'final ::= "Final answer: " ("@" tool "(" code ")" | [^@\\n]' in FMT.grammar()
    assert 'tool ::= "decompose" | "python"' in FMT.grammar()


def test_grammar_names_exactly_the_tools() -> None:
    g = FMT.grammar()
    assert 'tool ::= "decompose" | "python"' in g and "policy ::=" not in g
    assert "root ::=" in g
    assert 'policy ::= "lookup_colour"' in FMT.calling(["lookup_colour"]).grammar()


def _accepts(gbnf: str, text: str) -> bool:
    """Whether the grammar admits the text whole (llguidance, byte by byte: no model needed)."""
    import llguidance
    from llguidance.gbnf_to_lark import gbnf_to_lark

    tok = llguidance.LLTokenizer("byte")
    matcher = llguidance.LLMatcher(tok, llguidance.grammar_from("lark", gbnf_to_lark(gbnf)))
    return all(matcher.consume_token(t) for t in tok.tokenize_str(text)) and matcher.is_accepting()


@pytest.mark.parametrize(("grammar", "text", "admitted"), [
    ("step", "Action: @python(print(1))", True),
    ("step", "Thought: x\nAction: @python(\nprint(1))", True),
    ("step", "Final answer: @python(print(2))", True),
    # a tool is never called with nothing (seen in chat: "Action: @python()" three steps running)
    ("step", "Action: @python()", False),
    ("step", "Action: @python(  )", False),
    ("step", "Final answer: @python()", False),
    # a comment runs to the end of its line, as in Python and the parser: a bracket in it is text
    ("step", "Final answer: @python(x = 1\nprint(x) # (the total\n)", True),
    ("step", "Final answer: @python(x = 1\nprint(x) # the total (in inches))", False),
    ("step", "Action: @python(print(1) # done)", False),
    # a policy may take no arguments
    ("policy", "Action: @lookup_colour()", True),
    ("policy", 'Action: @lookup_colour(fruit="cherry")', True),
    ("policy", "Action: @python()", False),
    # asked for words, the answer is not a call, nor a call written out as an action
    ("words", "Final answer: Action: @python(print('Paris'))", False),
    ("words", "Final answer: @python(print(1))", False),
    ("words", "Final answer: Paris", True),
    ("words", "Final answer: A", True),
    ("words", "Final answer: Accra is the capital of Ghana.", True),
    ("words", "Final answer: Action @python(print('Paris'))", False),
    ("words", "Final answer: Act now.", True),
])
def test_grammar_admits_a_step_exactly_when_it_is_one(grammar: str, text: str, admitted: bool) -> None:
    gbnf = {"step": FMT.grammar(), "policy": FMT.calling(["lookup_colour"]).grammar(),
            "words": FMT.grammar(words_only=True)}[grammar]
    assert _accepts(gbnf, text) is admitted


def test_grammar_parses_in_llama_cpp() -> None:
    """llama.cpp's own GBNF parser reads the grammar (no model needed)."""
    from llama_cpp import LlamaGrammar

    for gbnf in (FMT.grammar(), FMT.grammar(words_only=True), FMT.grammar(final_only=True, words_only=True),
                 FMT.calling(["lookup_colour"]).grammar(thought_alone=False)):
        LlamaGrammar.from_string(gbnf, verbose=False)


def test_frames_of_each_step() -> None:
    action = FMT.parse("Thought: t\nAction: @python(print(1))")
    kinds = [(f.kind, f.text) for f in FMT.frames(action, "1")]
    assert kinds == [("thought", "t"), ("action", "@python(print(1))"), ("observation", "1")]
    assert [f.kind for f in FMT.frames(FMT.parse("Thought: x"), None)] == ["thought"]
    assert FMT.frames(FMT.parse("Final answer: 1"), None) == []


def test_examples_of_a_lived_episode_use_its_recorded_views() -> None:
    ep = Episode(goal="What is 17 * 23?", answer="391", reward=1.0, steps=[
        Step(thought="Action: @python(print(17 * 23))", action="@python(print(17 * 23))", observation="391",
             view="[goal] What is 17 * 23?"),
        Step(thought="Final answer: 391", view="[goal] What is 17 * 23?\n[action] @python(print(17 * 23))\n"
                                                "[observation] 391"),
    ])
    pairs = list(FMT.examples(ep))
    assert [c for _, c in pairs] == ["Action: @python(print(17 * 23))", "Final answer: 391"]
    assert pairs[1][0] == FMT.messages(ep.steps[1].view or "", ep.goal)  # exactly the prompt it was shown


def test_examples_of_a_hand_written_trace_replay_the_stack() -> None:
    ep = Episode(goal="What is 17 * 23?", answer="391", kind="guided", steps=[
        Step(thought="compute it", action="@python(print(17 * 23))", observation="391"),
    ])
    pairs = list(FMT.examples(ep))
    assert [c for _, c in pairs] == ["Thought: compute it\nAction: @python(print(17 * 23))", "Final answer: 391"]
    second = pairs[1][0]
    assert second[2:] == [{"role": "assistant", "content": "Thought: compute it\nAction: @python(print(17 * 23))"},
                          {"role": "user", "content": "Observation: 391\nCurrent goal: What is 17 * 23?"}]


def test_demonstration_reads_as_the_steps_the_model_should_take() -> None:
    ep = Episode(goal="What is 4821 * 3907?", answer="18835647", kind="guided", steps=[
        Step(thought="Action: @python(print(4821 * 3907))", observation="18835647"),
        Step(thought="Final answer: 18835647"),
    ])
    text = FMT.demonstration(ep)
    assert text.splitlines() == ["Worked example. Goal: What is 4821 * 3907?",
                                 "Action: @python(print(4821 * 3907))", "Observation: 18835647",
                                 "Final answer: 18835647"]


def test_policies_on_the_stack_become_callable_without_changing_the_prompt() -> None:
    fmt = StepFormat.for_names({"python": "run Python"})
    with pytest.raises(FormatError):
        fmt.parse("Action: @decompose(goal='x')")
    now = fmt.calling(["decompose"])
    assert isinstance(now.parse("Action: @decompose(goal='x')"), Action)
    assert now.system_prompt() == fmt.system_prompt()
    assert '"decompose"' in now.grammar() and '"decompose"' not in fmt.grammar()


def test_bad_names_are_refused() -> None:
    with pytest.raises(FormatError):
        StepFormat.for_names({"no spaces": "x"})
