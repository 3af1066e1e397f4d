from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackmind.trace import Episode, Step, TraceError, load_episodes

# Text as people and models write it: any printable unicode, newlines, indentation, YAML-ish tokens.
_pieces = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff"),
                  max_size=12) | st.sampled_from(["\n", "  ", "- ", ": ", "#", "'", '"', "|", ">", "@python(", ")", "\t"])
text = st.lists(_pieces, max_size=8).map("".join)
maybe_float = st.none() | st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def episodes(draw: st.DrawFn) -> Episode:
    steps = draw(st.lists(st.builds(
        Step, thought=text, action=st.none() | text, observation=st.none() | text, view=st.none() | text,
        value=maybe_float, reward=maybe_float,
        meta=st.dictionaries(st.sampled_from(["tree_node", "rpe", "policy"]), st.integers() | text, max_size=2),
    ), max_size=4))
    return Episode(goal=draw(text), steps=steps, answer=draw(st.none() | text), reward=draw(maybe_float),
                   kind=draw(st.sampled_from(["episode", "guided"])), stack=draw(st.none() | text),
                   meta=draw(st.dictionaries(st.sampled_from(["usage", "owner"]), text, max_size=2)))


@settings(max_examples=150, deadline=None)
@given(episodes())
def test_round_trip_is_lossless(ep: Episode) -> None:
    assert Episode.from_text(ep.to_text()) == ep


def test_save_and_load(tmp_path: Path) -> None:
    ep = Episode(goal="What is 17 * 23?", steps=[
        Step(thought="Let me compute.\nCarefully.", action="@python(print(17 * 23))", observation="391",
             view="[goal] What is 17 * 23?", value=0.4)], answer="391", reward=1.0)
    path = ep.save(tmp_path)
    assert path.name == f"{ep.id}.trace.yaml"
    text = path.read_text()
    assert "Let me compute.\n    Carefully." in text  # multi-line text reads as written
    assert load_episodes(tmp_path) == [ep]


def test_hand_written_trace_reads() -> None:
    ep = Episode.from_text(
        "goal: Make 24 from 4 6 1 1\n"
        "kind: guided\n"
        "steps:\n"
        "  - thought: \"4 * 6 = 24 (left: 1 1 24)\"\n"
        "  - thought: |\n"
        "      1 * 1 = 1 (left: 1 24)\n"
        "    reward: 0.5\n"
        "answer: (4 * 6) * (1 * 1) = 24\n"
        "reward: 1\n"
    )
    assert ep.kind == "guided" and len(ep.steps) == 2 and ep.steps[1].reward == 0.5 and ep.reward == 1


@pytest.mark.parametrize(("source", "where", "message"), [
    ("goal: x\nsteps:\n  - thought: a\n    thougth: b\n", ":4:5:", "unknown step key 'thougth'"),
    ("goal: x\nbanana: 1\n", ":2:1:", "unknown key 'banana'"),
    ("steps: []\n", ":1:1:", "missing goal"),
    ("goal: x\ngoal: y\n", ":2:1:", "duplicate key 'goal'"),
    ("goal: x\nreward: lots\n", ":2:9:", "reward must be"),
    ("goal: x\nsteps: hello\n", ":2:8:", "steps must be a list"),
    ("goal: [unclosed\n", ":2:1:", "YAML syntax"),
    ("goal: x\nsteps:\n  - thought: 4 * 6 = 24 (left: 1 24)\n", ":3:30:", "must be quoted"),
    ("a: &a [1, 2]\nb: [*a, *a]\n", ":1:1:", "anchors and aliases"),
    ("goal: x\x00\n", ":1:1:", "NUL byte"),
    ("- just\n- a list\n", ":1:1:", "a trace is a mapping"),
    ("goal: x\nkind: dream\n", ":1:1:", "kind must be one of"),
])
def test_errors_name_file_line_column(source: str, where: str, message: str) -> None:
    with pytest.raises(TraceError) as e:
        Episode.from_text(source, "t.trace.yaml")
    assert str(e.value).startswith("t.trace.yaml" + where), str(e.value)
    assert message in str(e.value)


def test_undecodable_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.trace.yaml"
    p.write_bytes(b"goal: \xff\xfe\n")
    with pytest.raises(TraceError, match="not UTF-8"):
        Episode.load(p)
