"""Structural rewrites (DESIGN §2.4): per-channel affine maps (inference BatchNormalization, multiply/add by a
per-channel constant) folded into the weights of the convolution or Gemm that produces their input, so
the affine map costs nothing at run time and no longer splits a block; and rows picked out of stacked results
before they are computed (a feature pyramid's RoiAlign levels), so that the rows nobody reads are never
computed."""

from __future__ import annotations

from ..ir.graph import Graph, Node, Value
from ..ops import lookup
from .shapes import infer_node


def fold_channel_affine(graph: Graph) -> int:
    """Fold every foldable `y = x * scale + shift` into the producer of x; returns the number of nodes folded.
    Applies only when x has no other reader and is not a graph output; a fold can enable the next one
    (Conv → BatchNormalization → Mul), so it repeats to a fixed point."""
    folded = 0
    pending = list(graph.nodes)
    while pending:
        grown = [p for p in (_fold(graph, node) for node in pending) if p is not None]
        folded += len(grown)
        pending = [c for p in grown for c in p.outputs[0].consumers]   # what may now fold into the same producer
    if folded:
        graph.prune()
    return folded


def _fold(graph: Graph, node: Node) -> Node | None:
    """Fold `node` into the producer of its x input if both operators agree; returns that producer."""
    affine = lookup(node).channel_affine(node)
    if affine is None:
        return None
    x = node.inputs[affine.input]
    producer = x.producer
    if producer is None or x.consumers != [node] or x in graph.outputs or producer.outputs[0] is not x or \
            any(v is not None for v in producer.outputs[1:]):
        return None
    inputs = lookup(producer).absorb_channel_affine(producer, affine.scale, affine.shift)
    if inputs is None:
        return None
    for position, array in inputs.items():
        _set_input(producer, position, graph.add_constant(graph.fresh_name(f"{producer.name}_folded"), array))
    y = node.outputs[0]
    graph.remove_node(node)
    producer.outputs[0], y.producer = y, producer
    x.producer = None
    return producer


def _set_input(node: Node, position: int, value: Value) -> None:
    """Point input `position` of `node` at `value` (appending absent optional inputs as needed)."""
    while len(node.inputs) <= position:
        node.inputs.append(None)
    old = node.inputs[position]
    if old is not None:
        old.consumers.remove(node)
    node.inputs[position] = value
    value.consumers.append(node)


def pick_rows_first(graph: Graph) -> int:
    """Where rows are picked (`Op.row_picks`: a Gather along axis 0) out of results stacked by rows
    (`Op.stacks_rows`: a Concat along axis 0) that nodes of one operator produce and nothing else reads, ask that
    operator for the picked rows alone (`Op.picked_rows`) and read them instead; returns how many were
    replaced. The stacked nodes are then unused and pruned."""
    replaced = 0
    for node in list(graph.nodes):
        position = lookup(node).row_picks(node)
        stacked = node.inputs[0]
        stack = stacked.producer if position is not None else None
        if stack is None or not lookup(stack).stacks_rows(stack) or stacked.consumers != [node] or \
                stacked in graph.outputs or None in stack.inputs:
            continue
        parts = [v.producer for v in stack.inputs]
        if any(p is None or v.consumers != [stack] or v in graph.outputs or p.outputs[0] is not v or
               any(o is not None for o in p.outputs[1:]) for p, v in zip(parts, stack.inputs)):
            continue
        picked = lookup(parts[0]).picked_rows(parts, node.inputs[position])
        if picked is None:
            continue
        graph.remove_node(node)
        graph.opsets.setdefault(picked.domain, 1)
        made = graph.add_node(picked.op_type, picked.inputs, node.outputs, picked.attrs,
                              graph.fresh_name(parts[0].name), picked.domain)
        infer_node(made)
        replaced += 1
    if replaced:
        graph.toposort()
        graph.prune()
    return replaced
