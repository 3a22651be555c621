"""Cases for passes/rewrite/layout.py: transposes that compose or cancel, view chains (Reshape, Flatten,
Squeeze, Unsqueeze, axes as inputs from opset 13 and as attributes before) and Softmax shifts, with graphs
where a precondition fails (an intermediate with another reader, a permutation or shape that changes
something, a shift that varies along the softmax axis)."""

import numpy as np
from onnx import helper

from tests.helpers import FLOAT
from tests.passes.rewrite.harness import Case, model

S = [2, 3, 4]
X = [("x", FLOAT, S)]


def node(op: str, inputs: list[str], output: str, **attrs):
    return helper.make_node(op, inputs, [output], **attrs)


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def steps(*ops: tuple, inputs=X, leak: bool = False, opset: int = 17):
    """x -> ops ... -> z; each op is (op_type, constant second input or None, attrs); `leak`: the first
    result is a graph output too."""
    nodes, init, last = [], {}, "x"
    for i, (op, const, attrs) in enumerate(ops):
        out = "z" if i == len(ops) - 1 else f"t{i}"
        if const is not None:
            init[f"k{i}"] = const
        nodes.append(node(op, [last] + ([f"k{i}"] if const is not None else []), out, **attrs))
        last = out
    return model(nodes, inputs, ["z"] + (["t0"] if leak else []), init, opset)


def transpose(*perm: int) -> tuple:
    return ("Transpose", None, {"perm": list(perm)} if perm else {})


def reshape(*shape: int) -> tuple:
    return ("Reshape", i64(*shape), {})


def axes_input(op: str, *axes: int) -> tuple:
    return (op, i64(*axes), {})


def axes_attr(op: str, *axes: int) -> tuple:
    return (op, None, {"axes": list(axes)})


FLATTEN, RELU = ("Flatten", None, {}), ("Relu", None, {})


def shifted(c: np.ndarray, op: str = "Softmax", shift: str = "Add", opset: int = 17, x_shape=(2, 3, 8),
            c_first: bool = False, **attrs):
    """z = op(shift(x, c)) (or shift(c, x)) for a constant c."""
    nodes = [node(shift, ["c", "x"] if c_first else ["x", "c"], "s"), node(op, ["s"], "z", **attrs)]
    return model(nodes, [("x", FLOAT, list(x_shape))], ["z"], {"c": c}, opset)


def bias(*shape: int) -> np.ndarray:
    return np.random.default_rng(7).uniform(-2, 2, shape).astype(np.float32)


CASES = [
    Case("transpose_transpose", steps(transpose(1, 0, 2), transpose(2, 0, 1)),
         negatives=[steps(transpose(1, 0, 2), transpose(2, 0, 1), leak=True)]),
    Case("transpose_transpose", steps(transpose(1, 2, 0), transpose(2, 0, 1)), id="transpose_transpose_cancel"),
    Case("transpose_transpose", steps(transpose(), transpose()), id="transpose_transpose_default_perm"),
    Case("transpose_identity", steps(transpose(0, 1, 2)), negatives=[steps(transpose(0, 2, 1)), steps(transpose())]),
    Case("transpose_identity", steps(transpose(), inputs=[("x", FLOAT, [5])]), id="transpose_identity_rank_1"),
    Case("transpose_through_unary", steps(transpose(0, 2, 1), RELU, transpose(0, 2, 1)),
         negatives=[steps(transpose(0, 2, 1), RELU, transpose(0, 2, 1), leak=True),
                    steps(transpose(0, 2, 1), ("Softmax", None, {}), transpose(0, 2, 1))]),
    Case("transpose_through_unary", steps(transpose(1, 0, 2), ("Exp", None, {}), transpose(0, 2, 1)),
         id="transpose_through_unary_composed"),
    Case("view_noop", steps(reshape(2, 3, 4)), negatives=[steps(reshape(3, 2, 4)), steps(reshape(2, 1, 3, 4))]),
    Case("view_noop", steps(reshape(0, -1, 4)), id="view_noop_zero_and_minus_one"),
    Case("view_noop", steps(("Squeeze", None, {})), id="view_noop_squeeze_nothing"),
    Case("view_noop", steps(FLATTEN, inputs=[("x", FLOAT, [6, 4])]), id="view_noop_flatten_2d"),
    Case("view_chain", steps(reshape(6, 4), reshape(4, 6)),
         negatives=[steps(reshape(6, 4), reshape(4, 6), leak=True), steps(reshape(6, 4), RELU, reshape(4, 6))]),
    Case("view_chain", steps(reshape(4, -1), reshape(0, 3, -1)), id="view_chain_zero_copies_the_middle_shape"),
    Case("view_chain", steps(axes_input("Unsqueeze", 1), axes_input("Squeeze", 1)), id="squeeze_unsqueeze"),
    Case("view_chain", steps(axes_input("Squeeze", 1), axes_input("Unsqueeze", 1), inputs=[("x", FLOAT, [2, 1, 4])]),
         id="unsqueeze_squeeze"),
    Case("view_chain", steps(axes_input("Squeeze", 1), axes_input("Unsqueeze", 0), inputs=[("x", FLOAT, [2, 1, 4])]),
         id="unsqueeze_squeeze_moves_the_axis"),
    Case("view_chain", steps(FLATTEN, reshape(2, 12)), id="reshape_of_flatten"),
    Case("view_chain_unary", steps(reshape(2, 3, 2, 2), FLATTEN),
         negatives=[steps(reshape(2, 3, 2, 2), FLATTEN, leak=True)]),
    Case("view_chain_unary", steps(axes_attr("Unsqueeze", 0), axes_attr("Squeeze", 0), opset=11),
         id="squeeze_unsqueeze_opset_11"),
    Case("view_chain_unary", steps(axes_input("Unsqueeze", 3), ("Squeeze", None, {})), id="squeeze_all_of_unsqueeze"),
    Case("softmax_shift", shifted(bias(2, 3, 1)),
         negatives=[shifted(bias(1, 1, 8)), shifted(np.array([0, 0, -np.inf], np.float32).reshape(3, 1)),
                    shifted(bias(4, 2, 3, 1)), shifted(bias(2, 3, 1), shift="Sub", c_first=True),
                    shifted(bias(1, 3, 1), opset=11, axis=1)]),
    Case("softmax_shift", shifted(bias(1), c_first=True), id="softmax_shift_scalar_left"),
    Case("softmax_shift", shifted(bias(3, 1), op="LogSoftmax", shift="Sub"), id="log_softmax_shift_sub"),
    Case("softmax_shift", shifted(bias(1, 3, 8), axis=0), id="softmax_shift_axis_0",
         negatives=[shifted(bias(1, 3, 8), axis=1)]),
    Case("softmax_shift", shifted(bias(2, 1, 1), opset=11, axis=1), id="softmax_shift_opset_11_block"),
]
