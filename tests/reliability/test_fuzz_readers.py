"""Property-based fuzzing of the two readers of files people edit: traces and settings.

Whatever the text, reading it gives a valid object or the reader's own error (TraceError,
SettingsError) with a location; never another exception, never unbounded time or memory. What a
trace is read as is safe downstream: consolidation's rows from it are bounded.
"""

from __future__ import annotations

import math
import os
import time
import tracemalloc
from pathlib import Path

import pytest
from conftest import Cases
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackmind.consolidate.config import ConsolidateConfig
from stackmind.consolidate.dataset import Dataset, trajectory_examples
from stackmind.errors import StackmindError
from stackmind.settings import Settings
from stackmind.trace import Episode, TraceError

MAX_WEIGHT = 100  # the bound the trace format documents for meta.weight

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])

# ---- traces ----------------------------------------------------------------------------------------

HOSTILE_SCALARS = st.sampled_from([
    "null", "~", "", ".inf", "-.inf", ".nan", "1e11", "100000000000", "1.0e+300", "-1", "0", "true", "no",
    "'text'", '"a: b"', "[1, 2]", "{a: 1}", "!!binary aGk=", "!!set {a, b}", "2001-12-14", "2001-12-14t21:59:43",
    "0x1F", "0o17", "9" * 5000, "&a x", "*a", "|\n  block", ">\n  folded", "[" * 80 + "]" * 80,
    "!custom tag", "- item", "? complex", "%YAML 1.1", "---", "...", "\x00", "\ud800",
])
KEYS = st.sampled_from(["goal", "steps", "answer", "reward", "kind", "id", "created", "stack", "model", "meta",
                        "tree", "trace", "thought", "action", "observation", "view", "value", "substeps",
                        "weight", "banana"])


@st.composite
def yaml_traces(draw: st.DrawFn) -> str:
    """Text shaped like a trace: known and unknown keys, hostile values, nested steps and meta."""
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        key = draw(KEYS)
        if key in ("steps", "substeps") and draw(st.booleans()):
            lines.append(f"{key}:")
            for _ in range(draw(st.integers(0, 3))):
                lines.append(f"  - {draw(KEYS)}: {draw(HOSTILE_SCALARS)}")
                lines.append(f"    {draw(KEYS)}: {draw(HOSTILE_SCALARS)}")
        elif key == "meta" and draw(st.booleans()):
            lines.append("meta:")
            lines.append(f"  weight: {draw(HOSTILE_SCALARS)}")
            lines.append(f"  {draw(KEYS)}: {draw(HOSTILE_SCALARS)}")
        else:
            lines.append(f"{key}: {draw(HOSTILE_SCALARS)}")
    if draw(st.booleans()):
        lines.insert(0, "goal: " + draw(st.text(max_size=30).map(repr)))
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()):  # and some noise anywhere
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=20)) + text[i:]
    return text


def _check_trace(text: str) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        ep = Episode.from_text(text, "fuzz.trace.yaml")
    except TraceError as e:
        assert str(e).startswith("fuzz.trace.yaml:"), str(e)  # file:line:column
        ep = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5.0
    assert peak < 64 * 2**20, peak
    if ep is None:
        return
    assert isinstance(ep.goal, str) and isinstance(ep.meta, dict) and isinstance(ep.steps, list)
    assert ep.reward is None or math.isfinite(ep.reward)
    w = ep.meta.get("weight")
    assert w is None or isinstance(w, int | float) and 0 <= w <= MAX_WEIGHT
    assert Episode.from_text(ep.to_text()) == ep  # what was read writes back the same
    ep.reward = 1.0
    rows = Dataset(train=list(trajectory_examples([ep], Settings(),
                                                  ConsolidateConfig(traces_dirs=[], policies_dirs=[]))))
    assert len(rows.training_rows()) <= (MAX_WEIGHT + 1) * (len(ep.steps) + 1)  # one example a step, weight bounded


@pytest.mark.fault("fuzz: trace reader")
@FUZZ
@given(yaml_traces())
def test_trace_reader_on_trace_shaped_text(cases: Cases, text: str) -> None:
    cases.tried(text[:40])
    _check_trace(text)


@pytest.mark.control("fuzz: trace reader")  # random text rarely reads as a trace: it held at a9429b1 too
@FUZZ
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_trace_reader_on_any_text(cases: Cases, text: str) -> None:
    cases.tried(text[:40])
    _check_trace(text)


@pytest.mark.fault("fuzz: trace reader")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["[", "{a: ", "- ", "  - "]), st.integers(100, 100_000))
def test_trace_reader_on_deep_or_huge_structures(cases: Cases, opener: str, n: int) -> None:
    cases.tried(f"{opener!r} x {n}")
    _check_trace("goal: g\nmeta:\n  x: " + opener * n + "\n")


# ---- settings ----------------------------------------------------------------------------------------

FIELDS = st.sampled_from(sorted(Settings.model_fields))
RAW = st.sampled_from(["abc", "", "-1", "0", "1e400", "inf", "nan", "1" * 5000, "true", "[1]", "{}", "None",
                       "openai", "  8  ", "8.5", "\x01", "caf\u00e9", "http://x", "2" * 30]) | st.text(max_size=20)
TOML_VALUES = st.sampled_from(['"abc"', "8", "-8", "1e400", "inf", "nan", "[1, 2]", "{a = 1}", "true",
                               '"""multi\nline"""', "1979-05-27", "0x10", "", "= =", '"unclosed'])


@st.composite
def toml_texts(draw: st.DrawFn) -> str:
    lines = [f"{draw(FIELDS | st.sampled_from(['max_step', 'unknown', '[table]']))} = {draw(TOML_VALUES)}"
             for _ in range(draw(st.integers(0, 5)))]
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=10)) + text[i:]
    return text


def _read_settings() -> None:
    t0 = time.perf_counter()
    try:
        s = Settings()
    except StackmindError as e:  # SettingsError
        assert "\n" not in str(e) and str(e).strip(), str(e)  # one line, saying something
        s = None
    assert time.perf_counter() - t0 < 2.0
    if s is not None:  # what was read is bounded
        assert 1 <= s.max_steps <= 1000 and 0 < s.openai_deadline_s <= 3600 and math.isfinite(s.temperature)
        assert 0 < s.search_max_seconds <= 86_400 and s.render_budget_tokens <= 1_000_000


@pytest.mark.fault("fuzz: settings reader")
@FUZZ
@given(st.dictionaries(FIELDS, RAW, max_size=4))
def test_settings_from_the_environment(cases: Cases, values: dict[str, str]) -> None:
    cases.tried(repr(values)[:40])
    names = {f"STACKMIND_{k.upper()}": v for k, v in values.items() if k not in ("home", "cache")}
    names = {k: v.replace("\x00", "") for k, v in names.items()}
    old = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    try:
        _read_settings()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.fault("fuzz: settings reader")
@FUZZ
@given(toml_texts() | st.text(max_size=200))
def test_settings_from_stackmind_toml(cases: Cases, text: str) -> None:
    cases.tried(text[:40])
    path = Path("stackmind.toml")  # the test's own folder (tests/conftest.py changes into it)
    try:
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        path.write_bytes(text.encode("utf-8", "replace"))
    try:
        _read_settings()
    finally:
        path.unlink()
