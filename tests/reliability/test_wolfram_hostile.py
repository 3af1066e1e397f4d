"""Hostile `@wolfram` queries through the agent's loop, a scripted OpenAI-compatible server as the model.

At a9429b1 the sympy fallback ran on the host with no limit: ``9^9^9^9`` and ``factorial(10^9)`` froze
the agent (no episode after 150 s), ``2^2^2^2^2^2`` took 28 s and 1.7 GB. Now each ends inside the
sandbox VM at a limit, the observation says so, and the run goes on to its answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, Cases, env_for, stackmind
from fakes.openai_server import ScriptedOpenAI

from stackmind.trace import Episode

HOSTILE = ["9^9^9^9", "factorial(10^9)", "2^2^2^2^2^2"]


@pytest.mark.fault("hostile @wolfram input")
def test_hostile_queries_end_at_a_limit_and_the_run_answers(home: Path, work: Path, cases: Cases) -> None:
    replies = [f'Action: @wolfram(query="{q}")' for q in HOSTILE] + ["Final answer: too large to compute"]
    with ScriptedOpenAI(replies) as server:
        env = env_for(home, STACKMIND_BACKEND="openai", STACKMIND_OPENAI_BASE_URL=server.url,
                      STACKMIND_MEMORY="0", STACKMIND_POLICIES="0", STACKMIND_LEARN="0", STACKMIND_MAX_STEPS="6")
        ran = stackmind(["run", "--json", "How big is 9^9^9^9?"], env, work, timeout=180)
    assert ran.rc == 0 and "Traceback" not in ran.output, ran.output[-3000:]
    # three queries that each ran forever or took gigabytes on the host: seconds and little memory now
    assert ran.seconds < 120, ran.seconds
    assert ran.max_rss_mb < 1200, ran.max_rss_mb
    result = json.loads(ran.stdout)
    assert result["answer"] == "too large to compute"
    episode = Episode.load(result["episode"])
    for query, step in zip(HOSTILE, episode.steps, strict=False):
        cases.tried(query)
        assert step.action == f'@wolfram(query="{query}")'
        assert step.observation is not None and "hit the sandbox's limit" in step.observation, step.observation


@pytest.mark.fault("hostile @wolfram input")
def test_the_host_never_imports_sympy_to_answer(tmp_path: Path) -> None:
    """Model-written mathematics is parsed only in the guest: the host process has no sympy loaded."""
    code = (
        "import sys\n"
        "from stackmind.settings import Settings\n"
        "from stackmind.tools import ToolContext, ToolRegistry, first_invocation\n"
        "from stackmind.tools.wolfram import WolframTool\n"
        "r = ToolRegistry([WolframTool()]).run(first_invocation('@wolfram(solve x^2 - 9 = 0)'),"
        " ToolContext(Settings(), owner='t'))\n"
        "print(r.ok, r.text)\n"
        "print('sympy' in sys.modules)\n"
    )
    env = env_for(tmp_path / "home")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first.startswith("True") and "x = -3" in first and "x = 3" in first
    assert second == "False"
    assert str(ROOT) in env["PYTHONPATH"]


@pytest.mark.control("hostile @wolfram input")  # refused at a9429b1 too, by the host's parser
@pytest.mark.parametrize("query", ['__import__("os").system("id")', "x.__class__.__bases__", "lambda: 1",
                                   "((((((((((" * 24 + "x" + "))))))))))" * 24, "9" * 499])
def test_code_and_nesting_are_not_mathematics(query: str, tmp_path: Path) -> None:
    from stackmind.settings import Settings
    from stackmind.tools import Invocation, ToolContext, ToolRegistry
    from stackmind.tools.wolfram import WolframTool

    inv = Invocation("wolfram", query, 0, 0, (), {"query": query})
    result = ToolRegistry([WolframTool()]).run(inv, ToolContext(Settings(), owner="t"))
    if query.isdigit():
        assert result.ok and query[:20] in result.text  # a long number is still just a number
    else:
        assert not result.ok and ("could not read" in result.text or "limit" in result.text), result.text
