"""The built-in demo model: one pre-norm transformer encoder layer, built with onnx.helper.

It is written the way exporters write such a layer (LayerNorm and GELU decomposed into elementwise ops,
head-splitting Reshapes whose target shapes come from Shape -> Gather -> Concat), with symbolic `batch`
and `seq` dimensions, so importing it exercises shape binding, shape-subgraph folding and the
elementwise/reduction/matmul/softmax mix that fusion feeds on.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


class _Builder:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.nodes, self.inits, self.k = rng, [], [], 0

    def name(self, hint: str) -> str:
        self.k += 1
        return f"{hint}_{self.k}"

    def const(self, hint: str, array: np.ndarray) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, hint: str, *shape: int) -> str:
        return self.const(hint, (self.rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32))

    def op(self, op_type: str, *inputs: str, **attrs: object) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out


def _layer_norm(b: _Builder, x: str, hidden: int) -> str:
    mean = b.op("ReduceMean", x, axes=[-1])
    centered = b.op("Sub", x, mean)
    var = b.op("ReduceMean", b.op("Pow", centered, b.const("two", np.float32(2.0))), axes=[-1])
    std = b.op("Sqrt", b.op("Add", var, b.const("eps", np.float32(1e-5))))
    normed = b.op("Div", centered, std)
    gamma = b.const("gamma", np.ones(hidden, np.float32))
    return b.op("Add", b.op("Mul", normed, gamma), b.const("beta", np.zeros(hidden, np.float32)))


def _split_heads(b: _Builder, x: str, shape_of_x: str, heads: int, head_dim: int) -> str:
    axis0 = b.const("axis0", np.array([0], np.int64))
    batch = b.op("Unsqueeze", b.op("Gather", shape_of_x, b.const("i0", np.int64(0)), axis=0), axis0)
    seq = b.op("Unsqueeze", b.op("Gather", shape_of_x, b.const("i1", np.int64(1)), axis=0), axis0)
    target = b.op("Concat", batch, seq, b.const("hd", np.array([heads, head_dim], np.int64)), axis=0)
    return b.op("Transpose", b.op("Reshape", x, target), perm=[0, 2, 1, 3])


def demo_model(hidden: int = 64, heads: int = 4, ffn: int = 256, seed: int = 0) -> onnx.ModelProto:
    """A transformer encoder layer with inputs x[batch, seq, hidden] and mask[batch, seq] (1 = keep)."""
    b = _Builder(np.random.default_rng(seed))
    head_dim = hidden // heads
    shape = b.op("Shape", "x")
    h = _layer_norm(b, "x", hidden)
    q, k, v = (_split_heads(b, b.op("Add", b.op("MatMul", h, b.weight(n, hidden, hidden)),
                                    b.weight(n + "_bias", hidden)), shape, heads, head_dim) for n in "qkv")
    scores = b.op("Div", b.op("MatMul", q, b.op("Transpose", k, perm=[0, 1, 3, 2])),
                  b.const("scale", np.float32(np.sqrt(head_dim))))
    mask = b.op("Unsqueeze", "mask", b.const("axes12", np.array([1, 2], np.int64)))
    penalty = b.op("Mul", b.op("Sub", b.const("one", np.float32(1.0)), mask), b.const("neg", np.float32(-1e4)))
    probs = b.op("Softmax", b.op("Add", scores, penalty), axis=-1)
    context = b.op("Transpose", b.op("MatMul", probs, v), perm=[0, 2, 1, 3])
    merged = b.op("Reshape", context, b.op("Concat", b.op("Slice", shape, b.const("s0", np.array([0], np.int64)),
                                                             b.const("s2", np.array([2], np.int64))),
                                            b.const("hid", np.array([hidden], np.int64)), axis=0))
    x1 = b.op("Add", "x", b.op("MatMul", merged, b.weight("o", hidden, hidden)))
    up = b.op("Add", b.op("MatMul", _layer_norm(b, x1, hidden), b.weight("up", hidden, ffn)), b.weight("up_bias", ffn))
    gelu = b.op("Mul", b.op("Mul", up, b.op("Add", b.op("Erf", b.op("Div", up, b.const("sqrt2", np.float32(np.sqrt(2))))),
                                            b.const("one", np.float32(1.0)))), b.const("half", np.float32(0.5)))
    out = b.op("Add", x1, b.op("MatMul", gelu, b.weight("down", ffn, hidden)))
    b.nodes.append(helper.make_node("Identity", [out], ["y"], name="output"))
    graph = helper.make_graph(
        b.nodes, "demo_encoder_layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", hidden]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", hidden])],
        b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dnnfusion-demo",
                              ir_version=8)
    onnx.checker.check_model(model)
    return model
