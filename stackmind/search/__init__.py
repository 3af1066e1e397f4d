"""Tree-of-thought search over stack states.

    result = solve(Game24([4, 9, 10, 13]), llm, strategy="bfs", budget=Budget(llm_calls=20))
    result.answer, result.success, result.tree.graph      # networkx DiGraph
    render_html(result.tree.to_json())                    # one self-contained page

Strategies: bfs (beam, as in the Tree-of-Thoughts paper), dfs (value threshold, backtracking),
mcts (PUCT with the scorer as prior and leaf evaluator). Expansion and scoring are batched; states
reached twice are merged; values are cached by state. The scorer is a hook (`Scorer`): the default
`LLMJudge` asks the model for sure / likely / impossible, three samples each.
"""

from __future__ import annotations

from stackmind.search.engine import Budget, Search, SearchResult
from stackmind.search.scorer import LLMJudge, Scorer
from stackmind.search.solve import STRATEGIES, solve
from stackmind.search.tree import SearchTree
from stackmind.search.viewer import render_html

__all__ = [
    "STRATEGIES", "Budget", "LLMJudge", "Scorer", "Search", "SearchResult", "SearchTree", "render_html",
    "solve",
]
