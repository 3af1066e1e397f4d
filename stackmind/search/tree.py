"""The search tree: a networkx DiGraph whose nodes are stack states plus the thought that led there.

Node attributes (all plain JSON, so the tree is stored with the episode as node-link data):
``thought`` (the step that made this state), ``thoughts`` (the whole path), ``depth``, ``parent``
(the first parent: the path the answer follows), ``value`` (the scorer's, or the verifier's for a
final state), ``visits``, ``outcome`` (open, expanded, pruned, dead, success, failure, final,
unexplored), ``answer`` and ``chosen`` (on the path to the best conclusion). A state reached a
second way is not duplicated: the second parent gets an edge marked ``merged``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import networkx as nx

from stackmind.tasks.base import State

OUTCOMES = ("open", "expanded", "pruned", "dead", "success", "failure", "final", "unexplored")


class SearchTree:
    def __init__(self, goal: str, strategy: str = "", task: str = "") -> None:
        self.graph: nx.DiGraph = nx.DiGraph(goal=goal, strategy=strategy, task=task, best=None)
        self.states: dict[int, State] = {}  # live State objects (not serialized)
        self._by_key: dict[Hashable, int] = {}

    # ---- building -----------------------------------------------------------------------------
    def add_root(self, state: State) -> int:
        return self._add(state, parent=None)

    def add_child(self, parent: int, state: State, **attrs: Any) -> tuple[int, bool]:
        """The node for ``state`` under ``parent``: (id, True) when new, (id, False) when merged."""
        existing = self._by_key.get(state.key)
        if existing is not None:
            if existing != parent and not self.graph.has_edge(parent, existing) \
                    and not nx.has_path(self.graph, existing, parent):
                self.graph.add_edge(parent, existing, merged=True)
            return existing, False
        node = self._add(state, parent, **attrs)
        self.graph.add_edge(parent, node, merged=False)
        return node, True

    def _add(self, state: State, parent: int | None, **attrs: Any) -> int:
        node = self.graph.number_of_nodes()
        self.graph.add_node(
            node, thought=state.thoughts[-1] if state.thoughts else "", thoughts=list(state.thoughts),
            depth=state.depth, parent=parent, value=None, visits=0, outcome="open", answer=None,
            chosen=False, key=repr(state.key) if state.facts is not None else None, **attrs,
        )
        self.states[node] = state
        self._by_key[state.key] = node
        return node

    def set(self, node: int, **attrs: Any) -> None:
        self.graph.nodes[node].update(attrs)

    def __getitem__(self, node: int) -> dict[str, Any]:
        return self.graph.nodes[node]

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    @property
    def root(self) -> int:
        return 0

    def children(self, node: int) -> list[int]:
        return list(self.graph.successors(node))

    def path(self, node: int) -> list[int]:
        """Root to ``node`` along first parents."""
        out = [node]
        while (parent := self.graph.nodes[out[-1]]["parent"]) is not None:
            out.append(parent)
        return out[::-1]

    def choose(self, node: int | None) -> None:
        """Mark the path to the best conclusion."""
        for n in self.graph.nodes:
            self.graph.nodes[n]["chosen"] = False
        self.graph.graph["best"] = node
        if node is not None:
            for n in self.path(node):
                self.graph.nodes[n]["chosen"] = True

    # ---- storing ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Node-link data (plain JSON/YAML), as stored in an episode's ``tree`` field."""
        return nx.node_link_data(self.graph, edges="edges")

    @staticmethod
    def graph_from_json(data: dict[str, Any]) -> nx.DiGraph:
        """The networkx graph back from node-link data."""
        return nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")
