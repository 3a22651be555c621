"""Declarative patterns over the graph IR: an operator with input patterns (matched modulo commutativity where
the registry says the operator commutes), a variable that binds any value (the same name twice means the same
value), and a constant with a condition on its array. A match binds names to values, constants and nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Union

import numpy as np

from ... import ops
from ...ir.graph import Graph, Node, Value


@dataclass(frozen=True)
class Var:
    """Any value (or only those `where(value)` accepts), bound to `name`."""

    name: str
    where: Callable[[Value], bool] | None = None


@dataclass(frozen=True)
class Const:
    """A constant value whose array `where(array)` accepts, bound to `name` (its array under `name + '.array'`
    is `Match.array(name)`)."""

    name: str
    where: Callable[[np.ndarray], bool] | None = None


@dataclass(frozen=True)
class Op:
    """A node of `op_type` (or one of several) whose inputs match `inputs` in order, or in either order for a
    two-input operator the registry calls commutative; its first output is the matched value. `name` binds the
    node; `attrs(node)` may refuse it; `shared` lets its output have readers outside the pattern (by default an
    inner node's output must be read by the pattern only, so replacing the root removes it)."""

    op_type: str | tuple[str, ...]
    inputs: tuple[Pattern, ...] = ()
    name: str | None = None
    attrs: Callable[[Node], bool] | None = None
    shared: bool = False
    commute: bool | None = None

    def types(self) -> tuple[str, ...]:
        return (self.op_type,) if isinstance(self.op_type, str) else tuple(self.op_type)


Pattern = Union[Var, Const, Op]


def P(op_type: str | tuple[str, ...], *inputs: Pattern, **options) -> Op:  # noqa: N802 - reads as a pattern
    """Shorthand: P("Mul", Var("x"), Const("c")) is Op("Mul", (Var("x"), Const("c")))."""
    return Op(op_type, tuple(inputs), **options)


@dataclass
class Match:
    """Names bound by a match (values, and nodes under the names their patterns gave), the root node, every
    node the pattern covers (root first), and the graph it was found in (for conditions on graph outputs)."""

    root: Node
    values: dict[str, Value] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    covered: list[Node] = field(default_factory=list)
    graph: Graph | None = None

    def __getitem__(self, name: str) -> Value:
        return self.values[name]

    def array(self, name: str) -> np.ndarray:
        """The array of the constant bound to `name`."""
        return self.values[name].const

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def copy(self) -> Match:
        return Match(self.root, dict(self.values), dict(self.nodes), list(self.covered), self.graph)

    def is_graph_output(self, value: Value) -> bool:
        """Whether `value` is one of the graph's outputs."""
        return self.graph is not None and any(o is value for o in self.graph.outputs)


def commutes(node: Node) -> bool:
    """Whether the registry says the node's operator commutes (a two-input operator only)."""
    op = ops.get(node.op_type, node.domain)
    return op is not None and op.algebra.commutative and len(node.inputs) == 2


def match(graph: Graph, pattern: Op, node: Node) -> Iterator[Match]:
    """Every way `pattern` matches with `node` as its root."""
    yield from _match_node(graph, pattern, node, Match(node, graph=graph), root=True)


def _match_node(graph: Graph, pattern: Op, node: Node, bound: Match, root: bool) -> Iterator[Match]:
    if node.op_type not in pattern.types() or node.domain not in ("", "ai.onnx") or \
            (pattern.attrs is not None and not pattern.attrs(node)):
        return
    if not root and not pattern.shared and not _read_only_by_pattern(graph, node):
        return
    if len(node.inputs) < len(pattern.inputs) or any(v is None for v in node.inputs[:len(pattern.inputs)]):
        return
    if len(pattern.inputs) and len(node.inputs) > len(pattern.inputs) and \
            any(v is not None for v in node.inputs[len(pattern.inputs):]):
        return
    if any(node is n for n in bound.covered):
        return
    here = bound.copy()
    here.covered.append(node)
    if pattern.name:
        here.nodes[pattern.name] = node
    orders = [list(node.inputs[:len(pattern.inputs)])]
    commute = pattern.commute if pattern.commute is not None else commutes(node)
    if commute and len(pattern.inputs) == 2:
        orders.append(orders[0][::-1])
    for inputs in orders:
        yield from _match_inputs(graph, pattern.inputs, inputs, here)


def _match_inputs(graph: Graph, patterns: tuple[Pattern, ...], values: list[Value], bound: Match) -> Iterator[Match]:
    if not patterns:
        yield bound
        return
    for first in _match_value(graph, patterns[0], values[0], bound):
        yield from _match_inputs(graph, patterns[1:], values[1:], first)


def _match_value(graph: Graph, pattern: Pattern, value: Value, bound: Match) -> Iterator[Match]:
    if isinstance(pattern, Op):
        if value.producer is not None and value.producer.outputs and value.producer.outputs[0] is value:
            yield from _match_node(graph, pattern, value.producer, bound, root=False)
        return
    if isinstance(pattern, Const) and (value.const is None or (pattern.where is not None and
                                                               not pattern.where(value.const))):
        return
    if isinstance(pattern, Var) and pattern.where is not None and not pattern.where(value):
        return
    if pattern.name in bound.values:
        if bound.values[pattern.name] is value or _same_constant(bound.values[pattern.name], value):
            yield bound
        return
    here = bound.copy()
    here.values[pattern.name] = value
    yield here


def _same_constant(a: Value, b: Value) -> bool:
    return a.const is not None and b.const is not None and a.const.shape == b.const.shape and \
        a.const.dtype == b.const.dtype and bool(np.array_equal(a.const, b.const, equal_nan=True))


def _read_only_by_pattern(graph: Graph, node: Node) -> bool:
    """An inner node may go with the root: its outputs are read once, and none is a graph output."""
    outputs = [v for v in node.outputs if v is not None]
    return len(outputs) == 1 and len(outputs[0].consumers) == 1 and all(o is not outputs[0] for o in graph.outputs)


# --- conditions rules use ---------------------------------------------------------------------------------
def equals(number: float) -> Callable[[np.ndarray], bool]:
    """A constant every element of which is `number` (any shape, any dtype)."""
    return lambda a: a.size > 0 and bool(np.all(a == number))


def scalar(a: np.ndarray) -> bool:
    """A constant with one element (a scalar broadcast everywhere)."""
    return a.size == 1


def is_float(v: Value) -> bool:
    return v.dtype is not None and np.dtype(v.dtype).kind == "f"
