"""The one step format: the prompt a step sees, the parse of a reply, the training target, the grammar.

A reply is ONE step:

    Thought: <one line of reasoning>                       a thought (it goes on the stack)
    Action: @name(arguments)                               a tool or a learning policy is run
    Final answer: <the answer>                             the episode's conclusion

and a thought line may come first, before an action or the final answer. `StepFormat` owns all of
it, the way a DSPy adapter owns ``format``, ``parse`` and ``format_completion``: the agent loop,
search over text goals, chat, policy trials, the consolidation dataset and the gate use it, and no
other code builds a step's prompt or reads a reply. The grammar (GBNF, the syntax llama.cpp reads;
other backends convert it) makes every reply parse: `Request.grammar` carries it and the backend
enforces it while decoding, with the names in an action limited to the tools and policies that exist.

    fmt = StepFormat.for_names({"python": "run Python in a sandbox ..."})
    messages = fmt.messages(view, goal)                   # what the model is shown
    step = fmt.parse(reply)                               # Thought | Action | Final
    fmt.completion(step)                                  # the text the model should have given
    fmt.grammar()                                         # what the backend enforces
    for messages, completion in fmt.examples(episode):    # training pairs, exactly as prompted
        ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from stackmind.errors import StackmindError
from stackmind.llm.base import Message
from stackmind.stack import Frame, Stack, TokenCounter, approx_tokens, parse_view
from stackmind.storage import SQLiteStackStore
from stackmind.tools.invocation import Invocation, find_invocations
from stackmind.trace import Episode
from stackmind.trace import Step as TraceStep

SYSTEM = """You are stackmind, an agent that reaches a goal one step at a time.
Your working memory (the stack) is shown as lines that start with the kind of each frame: [goal], [action], [observation], [thought], [trajectory] (a worked example), [policy] (a learning policy: how to do something, with examples), [conclusion].
Reply with ONE step, in one of these forms:
Thought: <one line of reasoning>
Action: @name(arguments)
Final answer: <the answer>
A thought line may come first, before the action or the final answer.
An action runs a tool or a learning policy; its result comes back as an observation.
{tools}
Rules:
1. When the goal asks to compute something from given numbers, dates, a list or a quoted text (arithmetic, counting, sorting, dates, reversing, what code prints), answer with a short program that prints the answer: Final answer: @python(...) (what it prints is the answer). When you must see a result before you can answer (a search, a part of a longer task), use Action: @python(...) first. Never work it out in your head.
2. When an observation answers the goal, give the Final answer.
3. A greeting, a description, an explanation or a fact you know gets the Final answer directly, in words, not a program."""

CONTEXT_KINDS = ("trajectory", "policy")  # frames that are context wherever they sit on the stack
STOP = ("\n[observation]", "\nObservation:")  # a model must never write the world's turn itself


class FormatError(StackmindError, ValueError):
    """A reply that is not one step of the format (possible only where no grammar was enforced)."""


@dataclass(frozen=True)
class Thought:
    text: str


@dataclass(frozen=True)
class Action:
    call: Invocation
    thought: str = ""


@dataclass(frozen=True)
class Final:
    answer: str
    thought: str = ""


ParsedStep = Thought | Action | Final

_THOUGHT = re.compile(r"Thought: ([^\n]+)")
_ACTION_HEAD = re.compile(r"Action: @([A-Za-z_][A-Za-z0-9_]*)\(")
_WRITTEN_ACTION = re.compile(r"Action:?\s*(?=@[A-Za-z_][A-Za-z0-9_]*\()")  # in a final answer
_FINAL = re.compile(r"Final answer: (.+)", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _gbnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class StepFormat:
    """The format for one agent: its tools' and policies' names and one-line descriptions."""

    tools: Mapping[str, str] = field(default_factory=dict)  # name -> description (in the system prompt)
    # Learning policies that may be called now: those whose frames are on the stack (each frame says
    # how to call it). They change the grammar, never the system prompt, which stays one prefix.
    policies: frozenset[str] = frozenset()
    system: str = SYSTEM

    @classmethod
    def for_names(cls, tools: Mapping[str, str]) -> StepFormat:
        bad = [n for n in tools if not _NAME.match(n)]
        if bad:
            raise FormatError(f"not a tool or policy name: {', '.join(bad)} (letters, digits, _)")
        return cls(dict(sorted(tools.items())))

    def calling(self, policies: Iterable[str]) -> StepFormat:
        """This format with ``policies`` callable too (their names join the grammar)."""
        names = frozenset(n for n in policies if _NAME.match(n) and n not in self.tools)
        return self if names == self.policies else replace(self, policies=names)

    @property
    def names(self) -> list[str]:
        """Everything an action may call."""
        return sorted({*self.tools, *self.policies})

    # ---- the prompt ---------------------------------------------------------------------------
    def system_prompt(self) -> str:
        listed = "\n".join(f"@{name}: {desc}" for name, desc in self.tools.items())
        return self.system.format(tools=f"Tools and learning policies:\n{listed}" if listed else "")

    def messages(self, view: str, goal: str) -> list[Message]:
        """What a step is shown, from the rendered stack (`Stack.render`, value-weighted under the budget).

        The frames up to the goal are the context (worked examples, policies, memories) in the first
        user turn, which ends by restating the goal (a small model answers what it read last); the
        agent's own steps after the goal are its assistant turns, and what the world said back
        (observations, conclusions) the user turns between them. A worked example or a policy pushed
        after the goal (fast learning, recall) is context too, shown before the goal: read last, right
        before the reply, its program was copied with its numbers (dates dev: 2 of 15 solved with the
        policy pushed above the goal's turn, 6 of 15 with it before the goal)."""
        frames = parse_view(view)
        cut = max((i for i, (k, t) in enumerate(frames) if k == "goal" and t.strip() == goal.strip()),
                  default=max((i for i, (k, _) in enumerate(frames) if k == "goal"), default=-1))
        later = frames[cut + 1:]
        context = [*frames[:max(cut, 0)], *(f for f in later if f[0] in CONTEXT_KINDS)]
        later = [f for f in later if f[0] not in CONTEXT_KINDS]
        msgs: list[Message] = [{"role": "system", "content": self.system_prompt()}]
        head = []
        for kind, text in context:
            turns = _demo_turns(text) if kind == "trajectory" else None
            if turns:  # a worked example is shown as the conversation it was
                msgs += turns
            else:
                head.append(_line(kind, text))
        head.append(f"Current goal: {goal}")
        msgs.append({"role": "user", "content": "\n".join(head)})
        mine: list[str] = []  # the agent's step being assembled (a thought, then its action)
        world: list[str] = []
        for kind, text in later:
            if kind in ("thought", "action"):
                if world:
                    msgs.append({"role": "user", "content": "\n".join(world)})
                    world = []
                    _restate(msgs, goal)
                mine.append(f"Thought: {text}" if kind == "thought" else f"Action: {text}")
                if kind == "action":
                    msgs.append({"role": "assistant", "content": "\n".join(mine)})
                    mine = []
            else:
                if mine:  # a thought on its own was a whole step
                    msgs.append({"role": "assistant", "content": "\n".join(mine)})
                    mine = []
                world.append(f"Observation: {text}" if kind == "observation" else _line(kind, text))
        if mine:
            msgs.append({"role": "assistant", "content": "\n".join(mine)})
        if world:
            msgs.append({"role": "user", "content": "\n".join(world)})
        if msgs[-1]["role"] == "assistant":
            msgs.append({"role": "user", "content": "Your next step:"})
        return _restate(msgs, goal)

    # ---- the reply ----------------------------------------------------------------------------
    def parse(self, reply: str) -> ParsedStep:
        """A reply as a typed step; `FormatError` when it is not one step of the format."""
        text = reply.strip()
        thought = ""
        m = _THOUGHT.match(text)
        if m:
            thought = m.group(1).strip()
            rest = text[m.end():]
            if not rest.strip():
                return Thought(thought)
            if not rest.startswith("\n"):
                raise FormatError("a thought is one line; an action or the final answer goes on the next line")
            text = rest[1:]
        head = _ACTION_HEAD.match(text)
        if head:
            calls = find_invocations(text[len("Action: "):])
            if not calls or calls[0].start != 0 or calls[0].end != len(text) - len("Action: "):
                raise FormatError("an action is one call, @name(arguments), with its brackets closed, and nothing after it")
            name = head.group(1)
            if name not in self.tools and name not in self.policies:
                raise FormatError(f"unknown tool or policy @{name}; available: "
                                  + ", ".join(f"@{n}" for n in self.names))
            return Action(calls[0], thought)
        f = _FINAL.match(text)
        if f and f.group(1).strip():
            answer = f.group(1).strip()
            if head := _WRITTEN_ACTION.match(answer):  # "Final answer: Action: @python(...)": the call is the answer
                answer = answer[head.end():]
            if answer.startswith("@"):
                calls = find_invocations(answer)
                if not calls or calls[0].start != 0 or calls[0].end != len(answer) or calls[0].name not in self.tools:
                    raise FormatError("an answer that is a call is one call of a tool, @name(arguments), with "
                                      "its brackets closed, and nothing after it")
            return Final(answer, thought)
        raise FormatError('a step is "Thought: ...", "Action: @name(...)" or "Final answer: ..."')

    def completion(self, step: ParsedStep) -> str:
        """The reply text of a step: exactly what the model should have written (a training target)."""
        lead = f"Thought: {step.thought}\n" if not isinstance(step, Thought) and step.thought else ""
        if isinstance(step, Thought):
            return f"Thought: {step.text}"
        if isinstance(step, Action):
            return f"{lead}Action: {step.call.text}"
        return f"{lead}Final answer: {step.answer}"

    # ---- the grammar --------------------------------------------------------------------------
    def grammar(self, *, thought_alone: bool = True, final_only: bool = False, words_only: bool = False) -> str:
        """GBNF for one step; the names in an action are the ones this format knows. With
        ``thought_alone`` off (the last step was a bare thought) a thought must lead to an action or
        the final answer: two bare thoughts in a row are not a step the format offers. With
        ``final_only`` (the step budget's last step) the step is the final answer, at once. With
        ``words_only`` a final answer is text, not a call, and does not open with "Action". A tool is
        called with code, never with nothing; a policy with its arguments, which may be none."""
        tools = " | ".join(_gbnf_literal(n) for n in self.tools) or '"python"'
        lead = 'thought ("\\n" (action | final))?' if thought_alone else 'thought "\\n" (action | final)'
        words, call = '[^@\\n] [^\\x00]{0,4000}', '"@" tool "(" code ")"'
        if words_only:  # nor the call written out as an action ("Final answer: Action: @python(...)")
            words = _not_opening("Action", "@\\n", "[^\\x00]{0,4000}")
        root = "final" if final_only else f"{lead} | action | final"
        policies = " | ".join(_gbnf_literal(n) for n in sorted(self.policies))
        return "\n".join([
            f"root ::= {root}",
            'thought ::= "Thought: " [^\\n]{1,300}',  # bounded: a small model can loop inside one line
            # an answer is text, or one call of a tool whose output is the answer (nothing after it)
            f'final ::= "Final answer: " {words if words_only else f"({call} | {words})"}',
            # a tool is given code (never nothing); a policy its arguments, which may be none
            'action ::= "Action: @" (tool "(" code ")"' + (' | policy "(" args ")"' if policies else "") + ")",
            f"tool ::= {tools}",
            *([f"policy ::= {policies}"] if policies else []),
            'code ::= [ \\t\\n]* first args',
            "first ::= [^()\\[\\]{}\"'# \\t\\n] | \"(\" args \")\" | \"[\" args \"]\" | \"{\" args \"}\" | dq | sq | comment",
            "args ::= piece*",
            "piece ::= [^()\\[\\]{}\"'#] | \"(\" args \")\" | \"[\" args \"]\" | \"{\" args \"}\" | dq | sq | comment",
            'dq ::= "\\"" ([^"\\\\\\n] | "\\\\" [^\\n])* "\\""',
            "sq ::= \"'\" ([^'\\\\\\n] | \"\\\\\" [^\\n])* \"'\"",
            'comment ::= "#" [^\\n]* "\\n"',  # to the end of its line, as in Python (and the parser)
            "",
        ])

    # ---- what a step leaves on the stack ------------------------------------------------------
    def frames(self, step: ParsedStep, observation: str | None) -> list[Frame]:
        """The frames a step pushes (the same live and when an episode is replayed for training)."""
        if isinstance(step, Thought):
            return [Frame("thought", step.text)]
        if isinstance(step, Action):
            out = [Frame("thought", step.thought)] if step.thought else []
            return out + [Frame("action", step.call.text), Frame("observation", observation or "")]
        return []

    def observation_frame(self, text: str) -> Frame:
        """What the world says about a reply that did something other than a step (or failed)."""
        return Frame("observation", text)

    # ---- training pairs -----------------------------------------------------------------------
    def examples(self, episode: Episode, *, budget_tokens: int = 1024,
                 count_tokens: TokenCounter = approx_tokens) -> Iterator[tuple[list[Message], str]]:
        """Every step of an episode as (prompt messages, completion), exactly as the agent is prompted.

        A step that recorded its view (every step the agent lived) is trained on that view; a
        hand-written step is replayed: the stack rebuilt frame by frame as the agent would have
        pushed it. Steps inside a learning policy's sub-goal are trained on their sub-goal."""
        yield from self._examples(episode.goal, episode.steps, episode.answer, budget_tokens, count_tokens,
                                  demos=list(episode.meta.get("demos_text", [])) if isinstance(episode.meta, dict) else [])

    def _examples(self, goal: str, steps: Sequence[TraceStep], answer: str | None, budget: int,
                  count: TokenCounter, demos: Sequence[str] = ()) -> Iterator[tuple[list[Message], str]]:
        store = SQLiteStackStore(Path(":memory:"))
        try:
            stack = Stack(store, "replay", count)
            for d in demos:
                stack.push("trajectory", d, value=0.8)
            stack.push("goal", goal, value=1.0)
            ended = False
            for s in steps:
                view = s.view if s.view else stack.render(budget)
                step = self.step_of(s)
                if step is not None:
                    yield self.messages(view, goal), self.completion(step)
                    for f in self.frames(step, s.observation):
                        stack.push_frame(f)
                    if isinstance(step, Final):
                        ended = True
                        break
                elif s.observation:  # a reply the world corrected: only its observation stays
                    stack.push_frame(self.observation_frame(s.observation))
                sub_goal = s.meta.get("subgoal") if isinstance(s.meta, dict) else None
                if s.substeps and isinstance(sub_goal, str):
                    yield from self._examples(sub_goal, s.substeps, None, budget, count)
            if not ended and answer:
                yield self.messages(stack.render(budget), goal), self.completion(Final(answer))
        finally:
            store.close()

    def step_of(self, s: TraceStep) -> ParsedStep | None:
        """The typed step a recorded step stands for (None when it was not a valid step).

        The agent records its raw reply in ``thought``; a hand-written trace may give the thought
        and the action separately (``thought: ...`` and ``action: @python(...)``)."""
        try:
            return self.parse(s.thought)
        except FormatError:
            pass
        if s.action:
            calls = find_invocations(s.action)
            if calls and calls[0].name in self.names:
                return Action(calls[0], _one_line(s.thought))
        return None

    def demonstration(self, episode: Episode) -> str:
        """A solved episode as a worked example (a ``trajectory`` frame's text)."""
        lines = [f"Worked example. Goal: {_one_line(episode.goal)}"]
        for s in episode.steps:
            step = self.step_of(s)
            if step is None:
                continue
            lines.append(self.completion(step))
            if isinstance(step, Action):
                lines.append(f"Observation: {(s.observation or '').strip()}")
            if isinstance(step, Final):
                break
        else:
            if episode.answer:
                lines.append(f"Final answer: {episode.answer}")
        return "\n".join(lines)


_DEMO = "Worked example. Goal: "
_DEMO_PARTS = re.compile(r"^(Thought|Action|Observation|Final answer): ", re.MULTILINE)


def _demo_turns(text: str) -> list[Message] | None:
    """A demonstration (`StepFormat.demonstration`) as the turns of its conversation."""
    if not text.startswith(_DEMO):
        return None
    first, _, rest = text.partition("\n")
    turns: list[Message] = [{"role": "user", "content": f"Current goal: {first[len(_DEMO):]}"}]
    marks = list(_DEMO_PARTS.finditer(rest))
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        part = rest[m.start(): nxt.start() if nxt else len(rest)].rstrip("\n")
        role = "user" if m.group(1) == "Observation" else "assistant"
        if turns[-1]["role"] == role:
            turns[-1] = {"role": role, "content": turns[-1]["content"] + "\n" + part}
        else:
            turns.append({"role": role, "content": part})
    if turns[-1]["role"] != "assistant":
        return None
    goal = first[len(_DEMO):]
    return [t if i == 0 or t["role"] == "assistant" else {"role": "user", "content": f"{t['content']}\n{_GOAL}{goal}"}
            for i, t in enumerate(turns)]


_GOAL = "Current goal: "


def _restate(msgs: list[Message], goal: str) -> list[Message]:
    """A turn of the world after the agent's steps ends by restating the goal (the model answers what it
    read last)."""
    last = msgs[-1]
    if last["role"] == "user" and len(msgs) > 2 and msgs[-2]["role"] == "assistant" and _GOAL not in last["content"]:
        content = "" if last["content"] == "Your next step:" else last["content"] + "\n"
        msgs[-1] = {"role": "user", "content": f"{content}{_GOAL}{goal}"}
    return msgs


def _line(kind: str, text: str) -> str:
    return f"[{kind}] " + text.replace("\n", "\n    ")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _not_opening(word: str, never: str, rest: str) -> str:
    """GBNF for text that does not open with ``word`` nor with a character in ``never`` (a class's
    body, GBNF-escaped), followed by ``rest``: at the first character where it leaves ``word``'s
    path, or a prefix of ``word`` alone."""
    out = [f"[^{never}{_class_char(word[0])}] {rest}"]
    for i in range(1, len(word)):
        out.append(f"{_gbnf_literal(word[:i])} ([^{_class_char(word[i])}\\n] {rest})?")
    return "(" + " | ".join(out) + ")"


def _class_char(c: str) -> str:
    return "\\" + c if c in "]^-\\" else c
