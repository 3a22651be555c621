"""Data-dependent extents padded to a static bound, so that what reads them runs as generated code.

An operator such as NonMaxSuppression has an output whose row count depends on the data. When the operator
has a padded variant (`Op.padded`: the result followed by padding rows up to a static bound, and the count of
valid rows), and every reader of the result either keeps padding rows apart from valid ones (`Op.padded_rows`:
elementwise maps, gathers) or can be told to ignore them (`Op.padding_sink`: scatters), the node is replaced by
its variant, the sinks are edited to ignore rows at or past the count, and every shape becomes static. A graph
output in the region is recorded in `Graph.padded_outputs` (executors trim it to the count, which becomes a
hidden graph output). If some reader cannot, the region is left as it was, to run as fallback code."""

from __future__ import annotations

from typing import Callable

from ..ir.graph import Graph, Node, Value
from ..passes.shapes import infer_node
from ..ops import lookup
from .fold import fold_constants

Edit = Callable[[Graph, Value], None]


def pad_dynamic_extents(graph: Graph) -> int:
    """Replace every data-dependent operator whose whole region of readers allows it; returns how many."""
    replaced = 0
    for node in list(graph.nodes):
        variant = lookup(node).padded(node) if node.outputs and node.outputs[0] is not None else None
        if variant is None or node.outputs[0].is_static:
            continue
        region = _region(graph, node)
        if region is None:
            continue
        nodes, sinks, exposed = region
        replacement = _replace(graph, node, *variant)
        count = replacement.outputs[1]
        for value, axis in exposed:
            graph.padded_outputs[value.name] = (axis, count.name)
        if exposed:
            graph.outputs.append(count)
        graph.toposort()
        for member in graph.nodes:                 # shapes in the region become static (the bound)
            if member is replacement or member in nodes:
                infer_node(member)
        for edit in sinks:
            edit(graph, count)
        graph.toposort()
        for member in graph.nodes:
            if any(v is not None and v.shape is None for v in member.outputs):
                infer_node(member)
        replaced += 1
    if replaced:
        fold_constants(graph)                       # the sinks' edits may extend constant data
    return replaced


def _region(graph: Graph, source: Node) -> tuple[list[Node], list[Edit], list[tuple[Value, int]]] | None:
    """The readers of `source`'s padded output (in graph order), the sink edits, and the padded values that are
    graph outputs (with their axis); None if a reader refuses."""
    padded: dict[int, int] = {id(source.outputs[0]): 0}        # value -> padded axis
    outputs = {id(v) for v in graph.outputs}
    nodes: list[Node] = []
    sinks: list[Edit] = []
    exposed = [(source.outputs[0], 0)] if id(source.outputs[0]) in outputs else []
    for node in graph.nodes[graph.nodes.index(source) + 1:]:
        rows = {i: padded[id(v)] for i, v in enumerate(node.inputs) if v is not None and id(v) in padded}
        if not rows:
            continue
        op = lookup(node)
        edit = op.padding_sink(node, rows)
        if edit is not None:
            sinks.append(edit)
            continue
        axis = op.padded_rows(node, rows)
        if axis is None:
            return None
        padded[id(node.outputs[0])] = axis
        nodes.append(node)
        if id(node.outputs[0]) in outputs:
            exposed.append((node.outputs[0], axis))
    return nodes, sinks, exposed


def _replace(graph: Graph, node: Node, op_type: str, domain: str) -> Node:
    """Swap `node` for its padded variant (same inputs, attributes and output 0, plus the count)."""
    count = graph.value(graph.fresh_name(f"{node.name}_count"))
    selected = node.outputs[0]
    graph.remove_node(node)
    graph.opsets.setdefault(domain, 1)
    return graph.add_node(op_type, node.inputs, [selected, count], node.attrs, graph.fresh_name(node.name), domain)
