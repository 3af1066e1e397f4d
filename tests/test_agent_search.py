"""Search strategies of the agent's loop, with a scripted backend (the logic, not the model): a tree of
steps whose children hold their actions' observations (the real sandbox runs them), and voting."""

from __future__ import annotations

from pathlib import Path

from stackmind.agent import Agent
from stackmind.llm import LLM
from stackmind.llm.base import Completion, Request
from stackmind.settings import Settings
from stackmind.tools import default_tools


class Scripted:
    """Replies by what the prompt's last turn holds: a goal gets an action and two guesses, an
    observation gets its value as the final answer. A judge prompt gets 'likely'."""

    name = "scripted"

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def generate(self, request: Request) -> list[Completion]:
        self.requests.append(request)
        out = []
        for p in request.prompts:
            last = p[-1]["content"] if isinstance(p, list) else p
            if isinstance(p, str):  # the judge's verdict prompt
                texts = ["likely"] * request.n
            elif last.startswith("Observation:"):
                value = last.split("\n")[0].removeprefix("Observation:").strip()
                texts = [f"Final answer: {value}"] * request.n
            else:
                texts = (["Action: @python(print(6 * 7))", "Final answer: 41", "Final answer: 43"] * request.n)[:request.n]
            out.append(Completion(texts, 10, 5))
        return out


def _agent(tmp_path: Path, **kw: object) -> tuple[Agent, Scripted]:
    s = Settings(home=tmp_path / "home", memory=False, policies=False, learn=False, demos=0, **kw)  # type: ignore[arg-type]
    backend = Scripted()
    return Agent(s, llm=LLM(backend), tools=default_tools(s)), backend


def test_bfs_over_steps_runs_actions_in_children_and_the_verifier_picks_the_answer(tmp_path: Path) -> None:
    agent, backend = _agent(tmp_path, search_samples=3, search_max_calls=6)
    ep = agent.run("What is 6 * 7?", search="bfs", verify=lambda a: 1.0 if a == "42" else 0.0)
    assert ep.answer == "42" and ep.reward == 1.0
    assert ep.tree is not None and len(ep.tree["nodes"]) >= 4  # root, three children, a grandchild
    assert [s.action for s in ep.steps][0] == "@python(print(6 * 7))"
    assert (ep.steps[0].observation or "").strip() == "42"  # the child ran its action in the sandbox
    assert any(r.grammar for r in backend.requests)  # expansions are constrained to the step format
    frames = [(f.kind, f.text) for f in agent.stack(ep.stack).frames()]
    assert frames == [("goal", "What is 6 * 7?"), ("conclusion", "42")]


def test_vote_takes_the_answer_most_paths_reached(tmp_path: Path) -> None:
    agent, backend = _agent(tmp_path)
    ep = agent.run("What is 6 * 7?", search="vote", samples=3)
    votes = ep.meta["vote"]
    assert len(votes["answers"]) == 3
    assert ep.answer == max(set(votes["answers"]), key=votes["answers"].count)
    assert all(r.temperature > 0 for r in backend.requests)  # sampled, not greedy
