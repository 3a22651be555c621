"""The reference executor: runs a Graph node by node with each operator's numpy semantics.

It is the oracle of last resort and the fallback for operators without generated code. Intermediates are
released after their last use, so peak memory stays close to what the graph needs.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DnnfusionError, InvalidModelError, ShapeError
from ..ir.graph import Graph, Node, Value
from ..ops import lookup
from ..ops.base import Op
from .feeds import check_feeds


class ReferenceExecutor:
    """Binds a shaped graph to its operators once; `run` then executes it for any conforming feeds."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.ops = [lookup(node) for node in graph.nodes]
        keep = {id(v) for v in graph.outputs}
        last_use: dict[int, int] = {}
        for i, node in enumerate(graph.nodes):
            for v in node.inputs:
                if v is not None and v.const is None:
                    last_use[id(v)] = i
        self._release = [[v for v in (node.inputs) if v is not None and v.const is None
                          and last_use.get(id(v)) == i and id(v) not in keep]
                         for i, node in enumerate(graph.nodes)]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs by name for the given feeds (checked against the graph's input names, dtypes, shapes)."""
        env: dict[int, np.ndarray] = {id(v): a for v, a in zip(self.graph.inputs, check_feeds(self.graph.inputs, feeds).values())}
        for node, op, release in zip(self.graph.nodes, self.ops, self._release):
            args = [None if v is None else (v.const if v.const is not None else env[id(v)]) for v in node.inputs]
            results = computed(op, node, args)
            for v, array in zip(node.outputs, results):
                if v is not None:
                    env[id(v)] = _checked(node, v, np.asarray(array))
            for v in release:
                env.pop(id(v), None)
        return {v.name: (v.const if v.const is not None else env[id(v)]) for v in self.graph.outputs}


def run_reference(graph: Graph, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """One-shot convenience: execute `graph` on `feeds` with the reference semantics."""
    return ReferenceExecutor(graph).run(feeds)


def computed(op: Op, node: Node, args: Sequence[np.ndarray | None]) -> Sequence[np.ndarray]:
    """The node's numpy reference on these inputs; a numpy failure inside it (a data-dependent extent that does
    not broadcast, an index out of range) is the model's or the data's problem at this node, named as such."""
    try:
        return op.compute(node, *args)
    except DnnfusionError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy raises many types; each means this node cannot run on this data
        raise InvalidModelError(f"{node.op_type} node '{node.name}' failed at run time: {type(e).__name__}: {e}") from e


def _checked(node: Node, value: Value, array: np.ndarray) -> np.ndarray:
    """The array, after checking it has the dtype and shape that compile time promised for `value`."""
    shape = value.shape
    if shape is not None and (len(shape) != array.ndim or any(d is not None and d != a for d, a in zip(shape, array.shape))):
        raise ShapeError(f"{node.op_type} node '{node.name}': output '{value.name}' has shape {array.shape} at run time "
                         f"but {shape} was inferred (an internal error; please report it)")
    if value.dtype is not None and array.dtype != value.dtype:
        raise ShapeError(f"{node.op_type} node '{node.name}': output '{value.name}' is {array.dtype} at run time "
                         f"but {value.dtype} was inferred (an internal error; please report it)")
    return array
