"""Graph rewriting before fusion: algebraic rules that remove operations and intermediates, and decomposed
operators recognised as the single operators they spell. Each rule module lists its rules in RULES; the
engine applies them greedily by FLOP reduction to a fixed point (engine.py)."""

from __future__ import annotations

from ...ir.graph import Graph
from . import associative, commutative, decomposed, distributive, identities, layout
from .engine import FAMILIES, Builder, RewriteOptions, RewriteReport, Rule, graph_flops, rewrite
from .pattern import Const, Match, Op, P, Var

RULES: list[Rule] = [*identities.RULES, *associative.RULES, *distributive.RULES, *commutative.RULES,
                     *layout.RULES, *decomposed.RULES]


def rewrite_graph(graph: Graph, options: RewriteOptions = RewriteOptions()) -> RewriteReport:
    """Apply every rule the options choose (in place) and report what fired."""
    return rewrite(graph, options.chosen(RULES))


def rule(name: str) -> Rule:
    """The rule called `name`."""
    found = [r for r in RULES if r.name == name]
    if not found:
        raise KeyError(f"no rewrite rule {name!r}; the rules are {', '.join(r.name for r in RULES)}")
    return found[0]


__all__ = ["FAMILIES", "RULES", "Builder", "Const", "Match", "Op", "P", "RewriteOptions", "RewriteReport", "Rule",
           "Var", "graph_flops", "rewrite", "rewrite_graph", "rule"]
