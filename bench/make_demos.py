"""Write the starter library's worked examples (``traces/demo-*.trace.yaml``): goals written by hand
(none is in the goal suite), each solved in the step format, its observations computed by running
the action in the sandbox VM, so that what a demonstration shows is what the tool really says.

    python bench/make_demos.py [--out traces] [--check]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from stackmind.settings import Settings
from stackmind.stepformat import Action, Final, StepFormat
from stackmind.tools import ToolContext
from stackmind.tools.invocation import find_invocations
from stackmind.tools.python import PythonTool
from stackmind.trace import Episode, Step

G24 = '''from itertools import permutations, product
nums = [{nums}]
found = None
for a, b, c, d in permutations(nums):
    for p, q, r in product("+-*/", repeat=3):
        for e in (f"(({{a}}{{p}}{{b}}){{q}}{{c}}){{r}}{{d}}", f"({{a}}{{p}}({{b}}{{q}}{{c}})){{r}}{{d}}", f"({{a}}{{p}}{{b}}){{q}}({{c}}{{r}}{{d}})",
                  f"{{a}}{{p}}(({{b}}{{q}}{{c}}){{r}}{{d}})", f"{{a}}{{p}}({{b}}{{q}}({{c}}{{r}}{{d}}))"):
            try:
                if found is None and abs(eval(e) - 24) < 1e-6:
                    found = e
            except ZeroDivisionError:
                pass
print(found)'''

# Shown when no demonstration is close to the goal (``meta: {fallback: true}``, `DemoLibrary.fallbacks`):
# one answer in words, one computed by a program, the two ways the system prompt's rules answer.
FALLBACK = {"chat-fact", "arithmetic-product"}

# (name, goal, [reply, ...]); a reply that is an action is run, and the next reply reads its output;
# a reply that is a final answer ends the example (a conversation: answered directly).
DEMOS: list[tuple[str, str, list[str]]] = [
    ("chat-greeting", "Hi there! How is it going?",
     ["Final answer: Hi! It is going well, thank you. I am stackmind, an agent that can answer questions, "
      "compute things with Python and look things up. What can I do for you?"]),
    ("chat-explain", "Explain how a linked list works, in about 100 words.",
     ["Final answer: A linked list stores a sequence of items as separate nodes. Each node holds one value "
      "and a reference (a pointer) to the next node; the list itself only remembers the first node, the head. "
      "To reach the fifth item you start at the head and follow four links, so reading by position takes "
      "time proportional to the position. In exchange, inserting or removing a node is cheap once you are "
      "there: you only change one or two links, and nothing has to be shifted. A doubly linked list also "
      "keeps a link to the previous node, so it can be walked in both directions."]),
    ("chat-fact", "Who wrote the novel Pride and Prejudice?",
     ["Final answer: Jane Austen wrote Pride and Prejudice; it was published in 1813."]),
    ("chat-fact-why", "What is the longest river in Africa, and why does it matter?",
     ["Final answer: The Nile, about 6,650 km long. It matters because it brings water and fertile soil "
      "to a desert: Egypt's farms, cities and history grew along its banks, and it still supplies most of "
      "Egypt's water today."]),
    ("chat-tips", "Give me three tips for staying focused while studying.",
     ["Final answer: 1. Work in short blocks (say 25 minutes) with a real break after each one. "
      "2. Put your phone in another room and close every tab you do not need. "
      "3. Start each session by writing down the one thing you want to finish."]),
    ("arithmetic-product", "What is 4821 * 3907? Answer with the number.",
     ["Final answer: @python(print(4821 * 3907))"]),
    ("arithmetic-percent", "What is 35% of 6480? Answer with the number.",
     ["Final answer: @python(print(6480 * 35 / 100))"]),
    ("arithmetic-powmod", "What is 7^122 mod 45? Answer with the number.",
     ["Final answer: @python(print(pow(7, 122, 45)))"]),
    ("arithmetic-sum", "Add 2381, 90412, 775 and 16034 together. Answer with the number.",
     ["Final answer: @python(print(2381 + 90412 + 775 + 16034))"]),
    ("arithmetic-divide", "Calculate 86142 divided by 3. Answer with the number.",
     ["Final answer: @python(print(86142 / 3))"]),
    ("word-shopping", "Lena buys 6 pencils at $1.25 each and 2 notebooks at $3.40 each. She pays with a $20 bill. "
     "How much change does she get, in dollars? Answer with the number.",
     ["Thought: Translate the problem sentence by sentence into a program, each line under its sentence.\n"
      "Final answer: @python(# Lena buys 6 pencils at $1.25 each\npencils = 6 * 1.25\n"
      "# and 2 notebooks at $3.40 each.\nnotebooks = 2 * 3.40\n# She pays with a $20 bill.\npaid = 20\n"
      "# How much change does she get?\nchange = paid - (pencils + notebooks)\nprint(round(change, 2)))"]),
    ("word-rates", "A machine fills 45 bottles a minute. It runs for 12 minutes, then a second machine of the same "
     "speed joins it for 8 more minutes. How many bottles are filled in total? Answer with the number.",
     ["Thought: Translate the problem sentence by sentence into a program, each line under its sentence.\n"
      "Final answer: @python(# A machine fills 45 bottles a minute.\nrate = 45\n# It runs for 12 minutes,\n"
      "alone = rate * 12\n# then a second machine of the same speed joins it for 8 more minutes.\n"
      "together = 2 * rate * 8\n# How many bottles are filled in total?\nprint(alone + together))"]),
    ("strings-count", "How many times does the letter 's' appear in 'mississippi'? Answer with the number.",
     ["Final answer: @python(print('mississippi'.count('s')))"]),
    ("strings-reverse", "Write the word 'planet' backwards. Answer with the reversed word.",
     ["Final answer: @python(print('planet'[::-1]))"]),
    ("strings-sort", "Put the letters of 'orange' in alphabetical order. Answer with the letters as one word.",
     ["Final answer: @python(print(''.join(sorted('orange'))))"]),
    ("strings-title", "Capitalise the first letter of every word in 'a tale of two cities'. Answer with the new text.",
     ["Final answer: @python(print(' '.join(w[0].upper() + w[1:] for w in 'a tale of two cities'.split())))"]),
    ("strings-position", "Which letter is third in the word 'guitar'? Answer with the letter.",
     ["Final answer: @python(print('guitar'[2]))"]),
    ("dates-weekday", "What day of the week was July 4, 2019? Answer with the day of the week.",
     ["Final answer: @python(import datetime\nprint(datetime.date(2019, 7, 4).strftime('%A')))"]),
    ("dates-between", "How many days are there from February 3, 2021 to May 17, 2021? Answer with the number.",
     ["Final answer: @python(import datetime\nprint((datetime.date(2021, 5, 17) - datetime.date(2021, 2, 3)).days))"]),
    ("dates-add", "What is the date 45 days after 2010-06-20? Answer with the date as YYYY-MM-DD.",
     ["Final answer: @python(import datetime\nprint(datetime.date(2010, 6, 20) + datetime.timedelta(days=45)))"]),
    ("dates-leap", "Was 1900 a leap year? Answer yes or no.",
     ["Final answer: @python(import calendar\nprint('yes' if calendar.isleap(1900) else 'no'))"]),
    ("lists-median", "What is the median of the numbers 12, 7, 31, 4, 18, 25? Answer with the number.",
     ["Final answer: @python(import statistics\nprint(statistics.median([12, 7, 31, 4, 18, 25])))"]),
    ("lists-above", "How many numbers in [3, 48, 17, 92, 55, 61, 8] are greater than 50? Answer with the number.",
     ["Final answer: @python(print(sum(1 for x in [3, 48, 17, 92, 55, 61, 8] if x > 50)))"]),
    ("lists-sort", "Order these numbers from largest to smallest: 14, -2, 37, 9. Answer with the numbers separated "
     "by commas.", ["Final answer: @python(print(', '.join(str(x) for x in sorted([14, -2, 37, 9], reverse=True))))"]),
    ("lists-count", "In the list red, blue, red, green, red, blue, how often does 'blue' occur? Answer with the number.",
     ["Final answer: @python(items = 'red, blue, red, green, red, blue'.split(', ')\nprint(items.count('blue')))"]),
    ("units-miles", "How many kilometres are 26.2 miles? Round to 2 decimal places. Answer with the number.",
     ["Final answer: @python(print(round(26.2 * 1.609344, 2)))"]),
    ("units-temperature", "What is 68 degrees Fahrenheit in Celsius? Round to 1 decimal place. Answer with the number.",
     ["Final answer: @python(print(round((68 - 32) * 5 / 9, 1)))"]),
    ("units-celsius", "Convert 25 degrees Celsius to Fahrenheit. Round to 1 decimal place. Answer with the number.",
     ["Final answer: @python(print(round(25 * 9 / 5 + 32, 1)))"]),
    ("units-time", "How many minutes are there in 3.5 days? Answer with the number.",
     ["Final answer: @python(print(3.5 * 24 * 60))"]),
    ("code-loop", "What does this Python code print?\n\n```python\nx = 3\nfor i in range(4):\n    x = x * 2 - i\n"
     "print(x)\n```\n\nAnswer with exactly what it prints.",
     ["Thought: Run the program as it is and read its output.\n"
      "Action: @python(x = 3\nfor i in range(4):\n    x = x * 2 - i\nprint(x))"]),
    ("word-problem", "Tom has 3 boxes of 24 crayons. He gives 15 crayons to his sister and then buys 2 packs of 8 "
     "crayons. How many crayons does Tom have now? Answer with the number.",
     ["Thought: Translate the problem sentence by sentence into a program, each line under its sentence.\n"
      "Final answer: @python(# Tom has 3 boxes of 24 crayons.\ncrayons = 3 * 24\n# He gives 15 crayons to his sister\n"
      "crayons = crayons - 15\n# and then buys 2 packs of 8 crayons.\ncrayons = crayons + 2 * 8\n"
      "# How many crayons does Tom have now?\nprint(crayons))"]),
    ("word-problem-fraction", "A class has 30 students. Two fifths of them walk to school and a third of the rest "
     "come by bus. The others are driven. How many students are driven? Answer with the number.",
     ["Thought: Translate the problem sentence by sentence into a program, each line under its sentence.\n"
      "Final answer: @python(# A class has 30 students.\nstudents = 30\n# Two fifths of them walk to school\n"
      "walk = students * 2 / 5\n# and a third of the rest come by bus.\nrest = students - walk\nbus = rest / 3\n"
      "# The others are driven. How many students are driven?\ndriven = rest - bus\nprint(int(driven)))"]),
    ("game24-program", "Use 2 5 8 11 once each with + - * / and parentheses to make 24. Answer with the expression.",
     ["Thought: Search every order, operation and grouping with a program.\n"
      "Action: @python(" + G24.format(nums="2, 5, 8, 11") + ")",
      "Final answer: @python(print(found))"]),
]


def _meta(name: str) -> dict[str, object]:
    meta: dict[str, object] = {"author": "stackmind starter library", "made_by": "bench/make_demos.py"}
    if name in FALLBACK:
        meta["fallback"] = True
    return meta


def build(out: Path) -> list[Path]:
    fmt = StepFormat.for_names({"python": PythonTool.description})
    tool = PythonTool()
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp))
        for name, goal, replies in DEMOS:
            ctx = ToolContext(settings)
            steps: list[Step] = []
            answer = None
            first = fmt.parse(replies[0])
            if isinstance(first, Final) and not find_invocations(first.answer):  # answered directly
                answer = first.answer
                ep = Episode(goal=goal, steps=[Step(thought=replies[0])], answer=answer, reward=1.0, kind="guided",
                             id=f"demo-{name}", created="2026-12-01T00:00:00+00:00",
                             meta=_meta(name))
                written.append(ep.save(out))
                continue
            called_answer = False  # the last reply is "Final answer: @python(...)": what it prints is the answer
            for reply in replies:
                step = fmt.parse(reply)
                if isinstance(step, Final):
                    calls = find_invocations(step.answer)
                    assert calls and calls[0].text == step.answer.strip(), reply
                    result = tool(calls[0], ctx)
                    if not result.ok:
                        raise SystemExit(f"{name}: the answer's call failed: {result.text}")
                    steps.append(Step(thought=reply))
                    answer, called_answer = result.text.strip(), True
                    break
                assert isinstance(step, Action), reply
                result = tool(step.call, ctx)
                if not result.ok:
                    raise SystemExit(f"{name}: the action failed: {result.text}")
                steps.append(Step(thought=reply, action=step.call.text, observation=result.text.strip()))
                answer = result.text.strip()
            for v in ctx.state.values():
                getattr(v, "close", lambda: None)()
            assert answer and find_invocations(steps[-1].thought)
            if not called_answer:
                steps.append(Step(thought=f"Final answer: {answer}"))
            ep = Episode(goal=goal, steps=steps, answer=answer, reward=1.0, kind="guided", id=f"demo-{name}",
                         created="2026-12-01T00:00:00+00:00", meta=_meta(name))
            written.append(ep.save(out))
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "traces")
    ap.add_argument("--check", action="store_true", help="fail when the committed traces differ from a rebuild")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = build(Path(tmp))
            stale = [p.name for p in fresh if not (args.out / p.name).is_file()
                     or (args.out / p.name).read_text() != p.read_text()]
        if stale:
            sys.exit(f"out of date: {', '.join(stale)}; run python bench/make_demos.py")
        print(f"{len(fresh)} demonstrations up to date")
        return
    for p in build(args.out):
        print(p)


if __name__ == "__main__":
    main()
