"""Breadth-first beam search, as in the Tree-of-Thoughts paper.

Every step expands the whole frontier (one batched generate), values the new states (one batched
score, cached by state) and keeps the ``beam`` best non-final states. A verified success ends the
search early unless ``stop_on_success`` is off.
"""

from __future__ import annotations

from stackmind.search.engine import Search


def bfs(search: Search, *, beam: int = 5) -> str:
    if beam < 1:
        raise ValueError("beam width must be at least 1")
    tree = search.tree
    frontier = [tree.root]
    seen = {tree.root}
    for depth in range(search.task.max_depth):
        if (spent := search.exhausted()) is not None:
            return spent
        expandable = [n for n in frontier if not search.is_final(n)]
        if not expandable:
            return "exhausted"
        children = search.expand(expandable)
        fresh = [c for kids in children.values() for c in kids if c not in seen]
        seen.update(fresh)
        if not fresh:
            return "exhausted"
        if (spent := search.exhausted()) is not None and spent != "budget: nodes":
            # Spent while expanding: the new states stay unvalued ("unexplored").
            return spent
        search.evaluate(fresh)
        if search.stop_on_success and search.solved() is not None:
            return "solved"
        ranked = sorted((c for c in fresh if not search.is_final(c)), key=search.value, reverse=True)
        frontier = ranked[:beam]
        for c in ranked[beam:]:
            tree.set(c, outcome="pruned")
        search.say(f"depth {depth + 1}: kept {len(frontier)} of {len(ranked)} states")
    return "solved" if search.solved() is not None else "max depth"
