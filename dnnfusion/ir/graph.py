"""The one IR: a Graph of Nodes connected by Values, with static shapes and known constants.

A Value is a tensor: its dtype, its static shape (a tuple of ints; None inside it marks a data-dependent
extent, None for the whole shape marks "not inferred yet"), the node that produces it and the nodes that
consume it. A Value with `const` set is known at compile time (an initializer or a folded result).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..errors import InvalidModelError

Shape = tuple  # tuple[int | None, ...]


@dataclass(eq=False)
class Value:
    """A tensor flowing between nodes."""

    name: str
    dtype: np.dtype | None = None
    shape: Shape | None = None
    const: np.ndarray | None = None
    producer: Node | None = None
    consumers: list[Node] = field(default_factory=list)

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def numel(self) -> int:
        """Element count (unknown or data-dependent extents count as 0)."""
        if self.shape is None:
            return 0
        return math.prod(d if isinstance(d, int) else 0 for d in self.shape)   # exact: no int64 wrap-around

    @property
    def nbytes(self) -> int:
        return self.numel * (np.dtype(self.dtype).itemsize if self.dtype is not None else 0)

    def set_const(self, array: np.ndarray) -> None:
        self.const = array
        self.dtype, self.shape = array.dtype, tuple(int(d) for d in array.shape)

    def __repr__(self) -> str:
        return f"Value({self.name!r}, {self.dtype}, {self.shape}{', const' if self.const is not None else ''})"


@dataclass(eq=False)
class Node:
    """One operator application. Omitted optional inputs/outputs are None."""

    op_type: str
    name: str
    inputs: list[Value | None]
    outputs: list[Value | None]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""
    opset: int = 0

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def input(self, i: int) -> Value | None:
        """The i-th input, or None when it is absent."""
        return self.inputs[i] if i < len(self.inputs) else None

    def __repr__(self) -> str:
        def names(values: list[Value | None]) -> str:
            shown = [v.name if v else "" for v in values[:8]]
            return ", ".join(shown + ([f"... {len(values) - 8} more"] if len(values) > 8 else []))

        return f"Node({self.op_type} {self.name!r}: {names(self.inputs)} -> {names(self.outputs)})"


class Graph:
    """A computation graph in topological order; graph inputs, outputs and constants are Values."""

    def __init__(self, name: str = "graph", opsets: dict[str, int] | None = None) -> None:
        self.name = name
        self.opsets: dict[str, int] = dict(opsets or {"": 17})
        self.nodes: list[Node] = []
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.values: dict[str, Value] = {}
        self.doc: dict[str, str] = {}
        # Graph outputs whose rows along one axis are valid only up to a count computed at run time (a
        # data-dependent extent padded to a static bound): output name -> (axis, name of the count, itself a
        # graph output that callers do not see). Executors return such an output trimmed to its count.
        self.padded_outputs: dict[str, tuple[int, str]] = {}
        self._fresh = itertools.count()

    # --- construction -------------------------------------------------------------------------
    def value(self, name: str) -> Value:
        """The value called `name`, created if new."""
        if name not in self.values:
            self.values[name] = Value(name)
        return self.values[name]

    def fresh_name(self, hint: str) -> str:
        while True:
            candidate = f"{hint}__{next(self._fresh)}"
            if candidate not in self.values:
                return candidate

    def add_constant(self, name: str, array: np.ndarray) -> Value:
        v = self.value(name)
        v.set_const(np.asarray(array))
        return v

    def add_node(self, op_type: str, inputs: list[Value | None], outputs: list[Value | None],
                 attrs: dict[str, Any] | None = None, name: str | None = None, domain: str = "") -> Node:
        node = Node(op_type, name or self.fresh_name(op_type), list(inputs), list(outputs), dict(attrs or {}),
                    domain, self.opsets.get(domain, 0))
        for v in node.inputs:
            if v is not None:
                v.consumers.append(node)
        for v in node.outputs:
            if v is not None:
                if v.producer is not None:
                    raise InvalidModelError(f"value '{v.name}' is produced by both '{v.producer.name}' and '{node.name}'")
                v.producer = node
        self.nodes.append(node)
        return node

    def remove_node(self, node: Node) -> None:
        for v in node.inputs:
            if v is not None and node in v.consumers:
                v.consumers.remove(node)
        for v in node.outputs:
            if v is not None and v.producer is node:
                v.producer = None
        self.nodes.remove(node)

    def replace_uses(self, old: Value, new: Value) -> None:
        """Point every consumer of `old` (and the graph outputs) at `new`."""
        for node in list(old.consumers):
            node.inputs = [new if v is old else v for v in node.inputs]
            new.consumers.append(node)
        old.consumers.clear()
        self.outputs = [new if v is old else v for v in self.outputs]

    # --- queries --------------------------------------------------------------------------------
    @property
    def initializers(self) -> list[Value]:
        """Constants that no node produces (weights, folded results), in name order."""
        return sorted((v for v in self.values.values() if v.const is not None and v.producer is None
                       and v not in self.inputs), key=lambda v: v.name)

    def live_values(self) -> Iterator[Value]:
        """Values used by the graph: inputs, node inputs/outputs, outputs (each once)."""
        seen: set[int] = set()
        for v in itertools.chain(self.inputs, (x for n in self.nodes for x in n.inputs + n.outputs), self.outputs):
            if v is not None and id(v) not in seen:
                seen.add(id(v))
                yield v

    @property
    def user_outputs(self) -> list[Value]:
        """The outputs a caller sees: all of them but the counts of padded outputs."""
        hidden = {count for _, count in self.padded_outputs.values()}
        return [v for v in self.outputs if v.name not in hidden]

    def trim_outputs(self, results: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name as the model defines them: padded ones cut to their count, counts dropped."""
        trimmed = {}
        for v in self.user_outputs:
            array = results[v.name]
            if v.name in self.padded_outputs:
                axis, count = self.padded_outputs[v.name]
                array = array[(slice(None),) * axis + (slice(0, int(results[count])),)]
            trimmed[v.name] = array
        return trimmed

    def operators(self) -> list[Node]:
        """The nodes counted as operators (DESIGN §5): all but `Constant` nodes, which only hold data."""
        return [n for n in self.nodes if n.op_type != "Constant"]

    def intermediates(self) -> list[Value]:
        """Values produced by a node that are not graph outputs."""
        outs = {id(v) for v in self.outputs}
        return [v for n in self.nodes for v in n.outputs if v is not None and id(v) not in outs]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
        return counts

    # --- ordering, copying, checking --------------------------------------------------------------
    def toposort(self) -> None:
        """Order nodes so every producer precedes its consumers (stable for already-ordered graphs)."""
        order: list[Node] = []
        state: dict[int, int] = {}
        for root in self.nodes:
            stack: list[tuple[Node, Iterator[Value | None]]] = [(root, iter(root.inputs))]
            if state.get(id(root)):
                continue
            state[id(root)] = 1
            while stack:
                node, it = stack[-1]
                for v in it:
                    p = v.producer if v is not None else None
                    if p is None or state.get(id(p)) == 2:
                        continue
                    if state.get(id(p)) == 1:
                        raise InvalidModelError(f"the graph has a cycle through node '{p.name}'")
                    state[id(p)] = 1
                    stack.append((p, iter(p.inputs)))
                    break
                else:
                    stack.pop()
                    state[id(node)] = 2
                    order.append(node)
        self.nodes = order

    def prune(self) -> int:
        """Drop nodes whose outputs nothing uses, and values nothing references; returns nodes removed."""
        needed = {id(v) for v in self.outputs}
        keep: list[Node] = []
        for node in reversed(self.nodes):
            if any(v is not None and (id(v) in needed or v.consumers) for v in node.outputs):
                keep.append(node)
                needed.update(id(v) for v in node.inputs if v is not None)
            else:
                for v in node.inputs:
                    if v is not None and node in v.consumers:
                        v.consumers.remove(node)
        removed = len(self.nodes) - len(keep)
        self.nodes = keep[::-1]
        live = {id(v) for v in self.live_values()}
        self.values = {k: v for k, v in self.values.items() if id(v) in live}
        return removed

    def clone(self) -> Graph:
        """A deep copy whose constants share their (read-only) arrays with this graph."""
        memo = {id(v.const): v.const for v in self.values.values() if v.const is not None}
        return copy.deepcopy(self, memo)

    def validate(self) -> None:
        """Check the structural invariants; raise InvalidModelError naming the first violation."""
        defined = {id(v) for v in self.inputs} | {id(v) for v in self.values.values() if v.const is not None and v.producer is None}
        for node in self.nodes:
            for v in node.inputs:
                if v is not None and id(v) not in defined:
                    raise InvalidModelError(
                        f"node '{node.name}' ({node.op_type}) reads '{v.name}', which no earlier node, input or initializer defines")
                if v is not None and node not in v.consumers:
                    raise InvalidModelError(f"value '{v.name}' does not list its consumer '{node.name}'")
            for v in node.outputs:
                if v is not None:
                    if v.producer is not node:
                        raise InvalidModelError(f"value '{v.name}' does not name '{node.name}' as its producer")
                    defined.add(id(v))
        for v in self.outputs:
            if id(v) not in defined:
                raise InvalidModelError(f"graph output '{v.name}' is never defined")

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.nodes)} nodes, {len(self.inputs)} inputs, {len(self.outputs)} outputs)"

