"""Small builders shared by the tests: one-node and few-node ONNX models."""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[tuple[str, int, Sequence]],
               outputs: Sequence[str], initializers: dict[str, np.ndarray] | None = None,
               opset: int = 17, output_type: int = TensorProto.UNDEFINED) -> onnx.ModelProto:
    """A model from nodes; inputs are (name, elem_type, shape with ints or symbolic names); outputs are
    untyped unless `output_type` is given (onnxruntime needs it)."""
    graph = helper.make_graph(
        list(nodes), "test",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, output_type, None) for n in outputs],
        [numpy_helper.from_array(a, k) for k, a in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def one_node_model(op: str, inputs: Sequence[tuple[str, int, Sequence[int]]], outputs: Sequence[tuple[str, int]],
                   opset: int = 22, initializers: dict[str, np.ndarray] | None = None, **attrs) -> onnx.ModelProto:
    """A one-node model; graph inputs are (name, elem_type, shape), outputs (name, elem_type); initializers
    follow the graph inputs as the node's trailing inputs."""
    names = [n for n, _, _ in inputs] + list(initializers or {})
    node = helper.make_node(op, names, [n for n, _ in outputs], **attrs)
    graph = helper.make_graph(
        [node], "t", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        [numpy_helper.from_array(a, k) for k, a in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


def concurrent_mismatches(model: Any, feeds: Sequence[np.ndarray], expected: Sequence[np.ndarray],
                          rounds: int) -> list[int]:
    """One thread per feed, each running `model` on input "x" `rounds` times: the feeds whose output "y" ever
    differed from its expected array."""
    wrong: list[int] = []

    def work(k: int) -> None:
        for _ in range(rounds):
            if not np.array_equal(model.run({"x": feeds[k]})["y"], expected[k]):
                wrong.append(k)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(len(feeds))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return wrong
