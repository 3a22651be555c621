"""Constant folding: drop every node whose outputs are all known at compile time, then dead code."""

from __future__ import annotations

from ..ir.graph import Graph


def fold_constants(graph: Graph) -> int:
    """Turn fully-known node outputs into initializers and prune what became unused; returns nodes removed."""
    before = len(graph.nodes)
    for node in list(graph.nodes):
        if all(v is None or v.const is not None for v in node.outputs):
            graph.remove_node(node)
    graph.prune()
    return before - len(graph.nodes)
