"""Depth-first search with a value threshold and backtracking.

From a node, expand it (one generate for its proposals), value its children (one batched score),
and descend into them best first; a child valued below ``threshold`` is pruned, and when a node's
children are all used up the search backtracks to the next-best sibling of an ancestor.
"""

from __future__ import annotations

from stackmind.search.engine import Search


def dfs(search: Search, *, threshold: float = 0.3) -> str:
    tree = search.tree
    visited: set[int] = set()
    # An explicit stack of nodes to visit: popping the best child first is depth-first order.
    todo = [tree.root]
    while todo:
        node = todo.pop()
        if node in visited:
            continue
        visited.add(node)
        if search.is_final(node) or tree[node]["depth"] >= search.task.max_depth:
            continue
        if (spent := search.exhausted()) is not None:
            return spent
        kids = [k for k in search.expand([node])[node] if k not in visited]
        if (spent := search.exhausted()) is not None and spent != "budget: nodes":
            return spent
        search.evaluate(kids)
        if search.stop_on_success and search.solved() is not None:
            return "solved"
        keep = []
        for k in kids:
            if search.is_final(k):
                visited.add(k)
            elif search.value(k) < threshold:
                tree.set(k, outcome="pruned")
                visited.add(k)
            else:
                keep.append(k)
        # Worst first onto the stack, so the best is popped next.
        todo.extend(sorted(keep, key=search.value))
    return "solved" if search.solved() is not None else "exhausted"
