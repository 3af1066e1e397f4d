"""Monte Carlo tree search (UCT with priors, PUCT-style), the scorer as prior and leaf evaluator.

Each round selects up to ``batch`` distinct leaves (a virtual loss spreads the selections), expands
them in one generate, values their children in one batched score, and backs the best child value
of each leaf up its selection path. A child's prior is its value normalised among its siblings; an
unvisited child's Q is its own value. Subtrees with nothing left to expand are skipped.
"""

from __future__ import annotations

import math

from stackmind.search.engine import Search


def mcts(search: Search, *, simulations: int = 24, c_puct: float = 1.0, batch: int = 4) -> str:
    if batch < 1 or simulations < 1:
        raise ValueError("mcts needs simulations >= 1 and batch >= 1")
    tree = search.tree
    g = tree.graph
    W: dict[int, float] = {}  # noqa: N806 (total value backed up through a node)
    N: dict[int, int] = {}  # noqa: N806 (visits)
    done: set[int] = set()  # nodes with nothing left to expand below them
    expanded: set[int] = set()

    def q(n: int) -> float:
        return W[n] / N[n] if N.get(n) else search.value(n)

    def prior(parent: int, child: int) -> float:
        kids = list(g.successors(parent))
        total = sum(search.value(k) for k in kids)
        return search.value(child) / total if total > 0 else 1.0 / len(kids)

    def puct(parent: int, k: int, virtual: dict[int, int]) -> float:
        n, vl = N.get(k, 0), virtual.get(k, 0)
        # A virtual loss counts pending selections as visits of value 0.
        q_k = W[k] / (n + vl) if n else search.value(k) / (1 + vl)
        n_parent = N.get(parent, 0) + virtual.get(parent, 0)
        return q_k + c_puct * prior(parent, k) * math.sqrt(n_parent + 1) / (1 + n + vl)

    def select(virtual: dict[int, int]) -> list[int] | None:
        path = [tree.root]
        node = tree.root
        while node in expanded:
            kids = [k for k in g.successors(node) if k not in done and k not in path]
            if not kids:
                done.add(node)
                return None
            node = max(kids, key=lambda k, parent=node: puct(parent, k, virtual))
            path.append(node)
        return path

    rounds = 0
    while rounds * batch < simulations:
        if tree.root in done:
            return "exhausted"
        if (spent := search.exhausted()) is not None:
            return spent
        rounds += 1
        virtual: dict[int, int] = {}
        paths: list[list[int]] = []
        for _ in range(batch):
            path = None
            while path is None and tree.root not in done:
                path = select(virtual)  # None marks one more used-up node: it ends
            if path is None:
                break
            leaf = path[-1]
            if any(p[-1] == leaf for p in paths):
                break  # the selection keeps returning one leaf: expand what we have
            for n in path:
                virtual[n] = virtual.get(n, 0) + 1
            paths.append(path)
        if not paths:
            continue
        leaves = [p[-1] for p in paths]
        to_expand = [n for n in leaves if not search.is_final(n)
                     and tree[n]["depth"] < search.task.max_depth]
        children = search.expand(to_expand) if to_expand else {}
        if (spent := search.exhausted()) is not None and spent != "budget: nodes":
            return spent
        search.evaluate([c for kids in children.values() for c in kids])
        for path in paths:
            leaf = path[-1]
            kids = children.get(leaf, [])
            if leaf in to_expand:
                expanded.add(leaf)
            if not kids:
                done.add(leaf)  # final, dead, or at the depth limit
                v = search.value(leaf)
            else:
                v = max(search.value(k) for k in kids)
            for n in path:
                N[n] = N.get(n, 0) + 1
                W[n] = W.get(n, 0.0) + v
                tree.set(n, visits=N[n])
        if search.stop_on_success and search.solved() is not None:
            return "solved"
        search.say(f"round {rounds}: {len(tree)} nodes, root Q {q(tree.root):.2f}")
    return "solved" if search.solved() is not None else "simulations"
