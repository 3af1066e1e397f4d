"""@wolfram: the wolframalpha client against a fake Wolfram|Alpha server on localhost; sympy without a key."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from stackmind.settings import Settings
from stackmind.tools import ToolContext, ToolRegistry, first_invocation
from stackmind.tools.wolfram import WolframTool, sympy_answer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.wolfram_server import FakeWolfram  # noqa: E402

ANSWERS = {
    "population of France": [("Input interpretation", "France | population", False),
                             ("Result", "68.4 million people (world rank: 20th)", False)],
    "integrate x^2": [("Indefinite integral", "integral x^2 dx = x^3/3 + constant", True),
                      ("Plot", "(plot)", False)],
}


def run(text: str, settings: Settings, tool: WolframTool) -> tuple[str, bool, dict]:
    inv = first_invocation(text)
    assert inv is not None
    result = ToolRegistry([tool]).run(inv, ToolContext(settings, owner="test"))
    return result.text, result.ok, result.meta


@pytest.fixture
def fake():
    with FakeWolfram(answers=ANSWERS) as server:
        yield server


def keyed(settings: Settings, key: str = "TEST-APPID") -> Settings:
    return settings.model_copy(update={"wolframalpha_api_key": SecretStr(key)})


def test_query_goes_to_wolfram_when_a_key_is_set(fake: FakeWolfram, settings: Settings) -> None:
    text, ok, meta = run('@wolfram(query="population of France")', keyed(settings), WolframTool(url=fake.url))
    assert ok and meta["source"] == "wolframalpha"
    assert "68.4 million" in text and text.startswith("Result:")
    assert "Input interpretation" not in text  # only the result pods
    assert fake.queries[-1]["input"] == ["population of France"]
    assert fake.queries[-1]["appid"] == ["TEST-APPID"]


def test_primary_pod_is_chosen(fake: FakeWolfram, settings: Settings) -> None:
    text, ok, _ = run("@wolfram(integrate x^2)", keyed(settings), WolframTool(url=fake.url))
    assert ok and "x^3/3" in text and "(plot)" not in text


def test_unknown_query_falls_back_to_sympy_or_says_so(fake: FakeWolfram, settings: Settings) -> None:
    text, ok, meta = run("@wolfram(solve x^2 - 9 = 0)", keyed(settings), WolframTool(url=fake.url))
    assert ok and meta["source"] == "sympy" and "x = -3" in text and "x = 3" in text
    assert "did not understand" in meta["wolfram_error"]
    text, ok, _ = run("@wolfram(meaning of life)", keyed(settings), WolframTool(url=fake.url))
    assert not ok and "could not answer" in text


def test_wrong_key_is_reported_without_leaking_it(fake: FakeWolfram, settings: Settings) -> None:
    text, ok, _ = run("@wolfram(population of France)", keyed(settings, "WRONG-SECRET"), WolframTool(url=fake.url))
    assert not ok and "Invalid appid" in text and "WRONG-SECRET" not in text


def test_strict_content_type_of_the_client(fake: FakeWolfram, settings: Settings) -> None:
    fake.content_type = "text/xml"  # the client asserts 'text/xml; charset=utf-8' exactly
    text, ok, meta = run("@wolfram(population of France)", keyed(settings), WolframTool(url=fake.url))
    assert not ok and "AssertionError" in text
    text, ok, meta = run("@wolfram(12*12)", keyed(settings), WolframTool(url=fake.url))
    assert ok and meta["source"] == "sympy" and "144" in text


def test_works_inside_a_running_event_loop(fake: FakeWolfram, settings: Settings) -> None:
    import asyncio

    async def main() -> str:
        return run("@wolfram(population of France)", keyed(settings), WolframTool(url=fake.url))[0]

    assert "68.4 million" in asyncio.run(main())


def test_no_key_uses_sympy(settings: Settings) -> None:
    text, ok, meta = run("@wolfram(integrate x^2 sin(x) dx)", settings, WolframTool(url="http://127.0.0.1:9/none"))
    assert ok and meta["source"] == "sympy"
    assert "-x**2*cos(x) + 2*x*sin(x) + 2*cos(x)" in text


@pytest.mark.parametrize(("query", "expected"), [
    ("17*23", "391"),
    ("what is 2^10?", "1024"),
    ("solve x^2 - 5x + 6 = 0", "x = 2, x = 3"),
    ("diff sin(x)*x", "x*cos(x) + sin(x)"),
    ("factor x^2-1", "(x - 1)*(x + 1)"),
    ("expand (x+1)^3", "x**3 + 3*x**2 + 3*x + 1"),
    ("sin(pi/2)+1/3", "4/3"),
])
def test_sympy_answers(query: str, expected: str) -> None:
    answer = sympy_answer(query)
    assert answer is not None and expected in answer


@pytest.mark.parametrize("query", ["hello world", '__import__("os").system("id")', "x.__class__", "lambda: 1", ""])
def test_sympy_refuses_prose_and_code(query: str) -> None:
    assert sympy_answer(query) is None


def test_empty_and_huge_queries_are_refused(settings: Settings) -> None:
    text, ok, _ = run("@wolfram()", settings, WolframTool())
    assert not ok and "needs a question" in text
    text, ok, _ = run(f"@wolfram({'1+' * 400}1)", settings, WolframTool())
    assert not ok and "keep it under" in text
