"""The tree viewer: a search tree (node-link JSON, as stored in an episode) as ONE self-contained
HTML page: no scripts or styles from elsewhere, so it opens from a file anywhere.

Every node shows its thought, value, visits and outcome; the path to the chosen conclusion is
highlighted; subtrees fold (``<details>``), and big trees start folded except the chosen path.
A node reached along two paths is drawn once, under its first parent, with a note of the others.
"""

from __future__ import annotations

import html
from typing import Any

import networkx as nx

from stackmind.search.tree import SearchTree

FOLD_ABOVE = 120  # trees with more nodes than this start folded (the chosen path stays open)
MAX_DEPTH = 200  # a search tree deeper than this is not a search (a hand-edited or broken trace)

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{font-size:20px;margin:0 0 6px}
.meta{color:#4a5568;margin-bottom:12px}
.meta b{color:#1d2330}
.ok{color:#1a7f37}.no{color:#b42318}
.bar{margin:10px 0 16px}
button{font:inherit;padding:3px 10px;margin-right:6px;border:1px solid #c9d1dc;background:#fff;border-radius:6px;cursor:pointer}
details{margin-left:22px;border-left:1px dashed #c9d1dc;padding-left:8px}
details.root{margin-left:0;border:none;padding-left:0}
summary{cursor:pointer;padding:3px 6px;border-radius:6px;list-style-position:outside}
summary.leaf{list-style:none}
.chosen>summary{background:#fff4c2;box-shadow:inset 3px 0 0 #e0a800;font-weight:600}
.id{color:#8792a2;font-size:12px;margin-right:6px}
.thought{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre-wrap}
.badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:9px;margin-left:6px;background:#eef1f5;color:#4a5568;font-weight:500}
.o-success{background:#d3f5dc;color:#1a7f37}.o-failure,.o-dead{background:#fde2e0;color:#b42318}
.o-pruned{background:#f0f0f0;color:#8792a2}.o-expanded{background:#e3ecff;color:#2450b2}
.o-final{background:#efe3ff;color:#6b3fb2}
.val{display:inline-block;width:44px;height:7px;background:#e4e7eb;border-radius:4px;margin-left:8px;vertical-align:middle}
.val i{display:block;height:7px;border-radius:4px;background:#3b82f6}
.also{color:#8792a2;font-size:12px;margin-left:30px}
.answer{font-family:ui-monospace,monospace;background:#eef8f0;padding:2px 6px;border-radius:4px}
"""

_JS = """
function setAll(open){document.querySelectorAll('details').forEach(function(d){d.open=open;});}
function chosenOnly(){document.querySelectorAll('details').forEach(function(d){d.open=d.classList.contains('chosen');});}
"""


def render_html(tree: dict[str, Any] | SearchTree | nx.DiGraph, title: str | None = None) -> str:
    """The page for a tree given as node-link data, a `SearchTree` or its graph."""
    if isinstance(tree, SearchTree):
        g = tree.graph
    elif isinstance(tree, nx.DiGraph):
        g = tree
    else:
        g = SearchTree.graph_from_json(tree)
    if g.number_of_nodes() == 0:
        raise ValueError("the tree has no nodes: nothing to draw")
    info = g.graph
    n_nodes = g.number_of_nodes()
    fold = n_nodes > FOLD_ABOVE
    roots = [n for n, a in g.nodes(data=True) if a.get("parent") is None]
    # Children drawn under their first parent only.
    under: dict[Any, list[Any]] = {n: [] for n in g.nodes}
    for n, a in g.nodes(data=True):
        if a.get("parent") is not None:
            if a["parent"] not in under:
                raise ValueError(f"node {n!r} names a parent {a['parent']!r} that is not in the tree")
            under[a["parent"]].append(n)
    if not roots:
        raise ValueError("the tree has no root: every node names a parent (a search's root has parent null)")
    level, depth = list(roots), 0
    while level:  # nodes are drawn nested, one level per parent: bound the nesting first
        depth += 1
        if depth > MAX_DEPTH:
            raise ValueError(f"the tree is deeper than {MAX_DEPTH} levels: not a search tree stackmind wrote")
        level = [k for n in level for k in under[n]]

    def node_html(n: Any, depth: int) -> str:
        a = g.nodes[n]
        chosen = bool(a.get("chosen"))
        outcome = str(a.get("outcome", ""))
        value = a.get("value")
        thought = a.get("thought") or ("goal: " + str(info.get("goal", "")) if depth == 0 else "")
        badges = [f'<span class="badge o-{html.escape(outcome)}">{html.escape(outcome)}</span>'] if outcome else []
        if value is not None:
            pct = max(0.0, min(1.0, float(value))) * 100
            badges.append(f'<span class="badge">value {float(value):.2f}</span>'
                          f'<span class="val" title="value {float(value):.3f}"><i style="width:{pct:.0f}%"></i></span>')
        visits = a.get("visits", 0)
        if visits:
            badges.append(f'<span class="badge">visits {visits}</span>')
        if a.get("answer"):
            badges.append(f'<span class="badge">answer: {html.escape(str(a["answer"]))}</span>')
        kids = under[n]
        others = [p for p in g.predecessors(n) if p != a.get("parent")]
        also = (f'<div class="also">also reached from {", ".join(f"#{p}" for p in others)}</div>'
                if others else "")
        inner = "".join(node_html(k, depth + 1) for k in kids)
        cls = ["node"] + (["chosen"] if chosen else []) + (["root"] if depth == 0 else [])
        is_open = (chosen or not fold) and bool(kids)
        summary_cls = "" if kids else ' class="leaf"'
        return (f'<details class="{" ".join(cls)}" data-id="{html.escape(str(n))}"'
                f'{" open" if is_open else ""}><summary{summary_cls}><span class="id">#{html.escape(str(n))}</span>'
                f'<span class="thought">{html.escape(str(thought))}</span>{"".join(badges)}</summary>'
                f"{also}{inner}</details>")

    body = "".join(node_html(r, 0) for r in roots)
    answer = info.get("answer")
    success = info.get("success")
    verdict = ('<b class="ok">solved</b>' if success else '<b class="no">not solved</b>') if success is not None else ""
    outcomes: dict[str, int] = {}
    for _, a in g.nodes(data=True):
        outcomes[str(a.get("outcome"))] = outcomes.get(str(a.get("outcome")), 0) + 1
    counts = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    heading = title or f"Search tree: {info.get('goal', '')}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(heading)}</title>
<style>{_CSS}</style><script>{_JS}</script></head>
<body data-nodes="{n_nodes}">
<h1>{html.escape(heading)}</h1>
<div class="meta">strategy <b>{html.escape(str(info.get("strategy") or "?"))}</b> · <b>{n_nodes}</b> nodes
({html.escape(counts)}) · stopped: {html.escape(str(info.get("stopped") or "?"))} · {verdict}
{f' · answer <span class="answer">{html.escape(str(answer))}</span>' if answer else ""}</div>
<div class="bar"><button onclick="setAll(true)">expand all</button><button onclick="setAll(false)">collapse all</button>
<button onclick="chosenOnly()">chosen path only</button></div>
{body}
</body></html>
"""
