"""Decomposed operators recognised as one (DESIGN §2.4): an exporter's chain for an activation becomes the single
operator it spells, whose generated code computes it the cheap way and whose block sees one element-wise
operator instead of three. So far: Mish, x * tanh(softplus(x)) (torch exports it so below opset 18), which
as one operator takes one exp and one division (ops/activations.py) instead of an exp, a log1p and a tanh."""

from __future__ import annotations

from ..ir.graph import Graph, Node, Value


def recognise_mish(graph: Graph) -> int:
    """Replace every Mul(x, Tanh(Softplus(x))) (either operand order) by Mish(x) where the Softplus and Tanh
    outputs are read by nothing else; returns the number of chains replaced."""
    found = 0
    for node in list(graph.nodes):
        chain = _mish_chain(graph, node)
        if chain is None:
            continue
        x, softplus, tanh = chain
        y = node.outputs[0]
        position = graph.nodes.index(node)
        for old in (node, tanh, softplus):
            graph.remove_node(old)
        mish = graph.add_node("Mish", [x], [y], name=graph.fresh_name(f"{node.name}_mish"))
        graph.nodes.remove(mish)
        graph.nodes.insert(min(position, len(graph.nodes)), mish)
        found += 1
    if found:
        graph.prune()
    return found


def _mish_chain(graph: Graph, node: Node) -> tuple[Value, Node, Node] | None:
    """(x, the Softplus, the Tanh) where `node` is the Mul ending x * tanh(softplus(x)); None otherwise."""
    if node.op_type != "Mul" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 2 or \
            any(v is None for v in node.inputs) or node.outputs[0] is None:
        return None
    for t, x in (node.inputs, node.inputs[::-1]):
        tanh = t.producer
        if tanh is None or tanh.op_type != "Tanh" or not _only_into(graph, t, node):
            continue
        s = tanh.inputs[0]
        softplus = s.producer
        if softplus is None or softplus.op_type != "Softplus" or softplus.inputs[0] is not x or \
                not _only_into(graph, s, tanh):
            continue
        if x.dtype is None or x.dtype.kind != "f" or x.dtype != node.outputs[0].dtype:
            continue
        return x, softplus, tanh
    return None


def _only_into(graph: Graph, value: Value, consumer: Node) -> bool:
    """Whether `consumer` is the only reader of `value` (and it is not a graph output)."""
    return len(value.consumers) == 1 and value.consumers[0] is consumer and all(o is not value for o in graph.outputs)
