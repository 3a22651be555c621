"""Cases for passes/rewrite/distributive.py: each rule's smallest graph (operand orders, Add and Sub, reductions
naming their axes by attribute and by input, at the opsets where each form exists) and graphs where a precondition
fails (no common factor, constants of opposite signs, a shrinking scale, a scale that is not a scalar, an
intermediate with another reader, a reduction that reduces nothing)."""

import numpy as np
from onnx import helper

from onnx import TensorProto

from tests.helpers import FLOAT, make_model
from tests.passes.rewrite.harness import Case, model

S = [2, 3, 4]
X = [("x", FLOAT, S)]
AB = [("a", FLOAT, S), ("b", FLOAT, S)]
NO_LARGE = ("zero", "negative", "small", "special")


def node(op: str, inputs: list[str], output: str, **attrs):
    return helper.make_node(op, inputs, [output], **attrs)


def f32(*values) -> np.ndarray:
    return np.array(values if len(values) > 1 else values[0], np.float32)


def combined(outer: str, left: tuple[str, str, str], right: tuple[str, str, str], inputs, init=None,
             leak: bool = False):
    """z = outer(op(p, q), op(r, s)) from (op, p, q) and (op, r, s)."""
    nodes = [node(left[0], list(left[1:]), "u"), node(right[0], list(right[1:]), "v"), node(outer, ["u", "v"], "z")]
    return model(nodes, inputs, ["z"] + (["u"] if leak else []), init)


def merged(outer: str, unary: str, leak: bool = False, other: bool = False):
    """z = outer(unary(a), unary(b)), or outer(unary(a), b) when `other`."""
    nodes = [node(unary, ["a"], "u")] + ([] if other else [node(unary, ["b"], "v")]) + \
        [node(outer, ["u", "b" if other else "v"], "z")]
    return model(nodes, AB, ["z"] + (["u"] if leak else []))


def reduced(reduction: str, inner: str, c: np.ndarray | None = None, axes: list[int] | None = None,
            axes_input: bool = False, opset: int = 17, leak: bool = False, **attrs):
    """z = reduction(inner(x[, c])) over `axes` (an attribute, or an input when `axes_input`)."""
    init = {} if c is None else {"c": c}
    nodes = [node(inner, ["x"] + ([] if c is None else ["c"]), "t")]
    if axes_input:
        init["axes"] = np.array(axes, np.int64)
        nodes.append(node(reduction, ["t", "axes"], "z", **attrs))
    else:
        nodes.append(node(reduction, ["t"], "z", **({"axes": axes} if axes is not None else {}), **attrs))
    return model(nodes, X, ["z"] + (["t"] if leak else []), init, opset=opset)


XY = X + [("y", FLOAT, S)]
XA = [("x", FLOAT, S), ("a", FLOAT, [4]), ("b", FLOAT, [3, 1])]
V4 = f32(1.0, 2.0, 3.0, 4.0)

CASES = [
    # a common factor or divisor taken out of a sum
    Case("factor_common_term", combined("Add", ("Mul", "a", "x"), ("Mul", "x", "b"), XA), scale=1.0,
         edges=("zero", "negative", "small"),
         negatives=[combined("Add", ("Mul", "a", "x"), ("Mul", "b", "b"), XA),
                    combined("Add", ("Mul", "a", "x"), ("Mul", "x", "b"), XA, leak=True)]),
    Case("factor_common_term", combined("Sub", ("Mul", "x", "a"), ("Mul", "b", "x"), XA), scale=1.0,
         edges=("zero", "negative", "small"), id="factor_common_term-sub"),
    Case("fold_common_factor_constants", combined("Add", ("Mul", "x", "c1"), ("Mul", "c2", "x"), X,
                                                  {"c1": V4, "c2": f32(0.5)}),
         negatives=[combined("Add", ("Mul", "x", "c1"), ("Mul", "x", "c2"), X, {"c1": V4, "c2": f32(-0.5)}),
                    combined("Add", ("Mul", "x", "c1"), ("Mul", "x", "c2"), X, {"c1": f32(3e38), "c2": f32(3e38)}),
                    combined("Add", ("Mul", "x", "c1"), ("Mul", "x", "c2"), X, {"c1": V4, "c2": f32(0.5)},
                             leak=True)]),
    Case("fold_common_factor_constants", combined("Sub", ("Mul", "x", "c1"), ("Mul", "x", "c2"), X,
                                                  {"c1": f32(3.0), "c2": -V4}), id="fold_common_factor_constants-sub",
         negatives=[combined("Sub", ("Mul", "x", "c1"), ("Mul", "x", "c2"), X, {"c1": f32(3.0), "c2": V4})]),
    Case("common_divisor", combined("Add", ("Div", "x", "a"), ("Div", "y", "a"), XY + [("a", FLOAT, [4])]),
         low=0.5, high=4.0, edges=("negative",),
         negatives=[combined("Add", ("Div", "x", "a"), ("Div", "a", "y"), XY + [("a", FLOAT, [4])]),
                    combined("Add", ("Div", "x", "a"), ("Div", "y", "a"), XY + [("a", FLOAT, [4])], leak=True)]),
    Case("common_divisor", combined("Sub", ("Div", "x", "a"), ("Div", "y", "a"), XY + [("a", FLOAT, [4])]),
         low=0.5, high=4.0, edges=("negative",), id="common_divisor-sub"),
    # f(a) ⊕ f(b) -> f(a ⊗ b)
    Case("exp_product", merged("Mul", "Exp"), edges=NO_LARGE,
         negatives=[merged("Mul", "Exp", leak=True), merged("Mul", "Exp", other=True), merged("Add", "Exp")]),
    Case("exp_quotient", merged("Div", "Exp"), edges=NO_LARGE,
         negatives=[merged("Div", "Exp", leak=True), merged("Div", "Exp", other=True)]),
    Case("log_product", merged("Add", "Log"), low=0.01, high=10.0, edges=("zero",),
         negatives=[merged("Add", "Log", leak=True), merged("Mul", "Log")]),
    Case("log_quotient", merged("Sub", "Log"), low=0.01, high=10.0, edges=(),
         negatives=[merged("Sub", "Log", leak=True), merged("Sub", "Log", other=True)]),
    Case("sqrt_product", merged("Mul", "Sqrt"), low=0.0, high=10.0, edges=("zero",),
         negatives=[merged("Mul", "Sqrt", leak=True), merged("Div", "Sqrt")]),
    # a scale or a negation moved past a reduction
    Case("reduce_scaled", reduced("ReduceMean", "Mul", f32(3.0), axes=[2]), edges=("zero", "negative", "small",
                                                                                   "special"),
         negatives=[reduced("ReduceMean", "Mul", f32(0.5), axes=[2]),          # shrinks: sum(x) may overflow
                    reduced("ReduceMean", "Mul", V4, axes=[2]),                # not a scalar
                    reduced("ReduceMean", "Mul", f32(3.0), axes=[2], leak=True)]),
    Case("reduce_scaled", reduced("ReduceSum", "Div", f32(-0.25), keepdims=0), id="reduce_scaled-sum-everything",
         edges=("zero", "negative", "small", "special")),
    Case("reduce_scaled", reduced("ReduceSum", "Mul", f32(2.0), axes=[0, 2], opset=11, keepdims=0),
         id="reduce_scaled-sum-axes-attribute", edges=("zero", "negative", "small", "special")),
    Case("reduce_scaled_axes_input", reduced("ReduceSum", "Mul", f32(-4.0), axes=[1], axes_input=True, keepdims=0),
         edges=("zero", "negative", "small", "special"),
         negatives=[reduced("ReduceSum", "Div", f32(4.0), axes=[1], axes_input=True),
                    reduced("ReduceSum", "Mul", f32(1.0, 1.0, 1.0, 1.0), axes=[1], axes_input=True)]),
    Case("reduce_scaled_axes_input", reduced("ReduceMean", "Mul", f32(2.5), axes=[-1], axes_input=True, opset=18),
         edges=("zero", "negative", "small", "special"), id="reduce_scaled_axes_input-mean-opset-18"),
    Case("reduce_negated", reduced("ReduceMean", "Neg", axes=[1], keepdims=0),
         negatives=[reduced("ReduceMean", "Neg", axes=[1], leak=True), reduced("ReduceMean", "Abs", axes=[1])]),
    Case("reduce_negated", reduced("ReduceSum", "Neg", opset=11, axes=[0]), id="reduce_negated-sum-opset-11"),
    Case("reduce_negated_axes_input", reduced("ReduceSum", "Neg", axes=[2], axes_input=True),
         negatives=[reduced("ReduceSum", "Neg", axes=[], axes_input=True, noop_with_empty_axes=1)]),
    Case("reduce_negated_axes_input", reduced("ReduceMean", "Neg", axes=[0, 1], axes_input=True, opset=18),
         id="reduce_negated_axes_input-mean-opset-18"),
]


# --- the paper's table ------------------------------------------------------------------------------------------
def factor_with_one(b_constant: bool = True, other: bool = False, negative: bool = False):
    init = {"b": f32(0.5, -2.0 if negative else 2.0, 3.0, 1.0)} if b_constant else None
    nodes = [node("Mul", ["a", "b"], "p"), node("Add", ["c" if other else "a", "p"], "z")]
    inputs = [("a", FLOAT, [3, 4])] + ([] if b_constant else [("b", FLOAT, [3, 4])]) + \
        ([("c", FLOAT, [3, 4])] if other else [])
    return model(nodes, inputs, ["z"], init)


def square_minus_product(leak: bool = False, sum_op: str = "Add"):
    nodes = [node(sum_op, ["a", "b"], "s"), node("Mul", ["s", "s"], "sq"), node("Mul", ["s", "c"], "sc"),
             node("Sub", ["sq", "sc"], "z")]
    return model(nodes, AB + [("c", FLOAT, S)], ["z"] + (["sc"] if leak else []))


def shift_after_sum(direction: str = "LEFT"):
    inits = {"k": np.array(3, np.uint32), "axes": np.array([1], np.int64)}
    nodes = [node("BitShift", ["x", "k"], "shifted", direction=direction),
             node("ReduceSum", ["shifted", "axes"], "z", keepdims=0)]
    return make_model(nodes, [("x", TensorProto.UINT32, [4, 6])], ["z"], inits, opset=17,
                      output_type=TensorProto.UINT32)


def exp_of_sum(opset: int = 17, leak: bool = False, inner: str = "Exp"):
    if opset >= 18:
        nodes = [node(inner, ["x"], "e"), node("ReduceProd", ["e", "axes"], "z", keepdims=1)]
        init = {"axes": np.array([2], np.int64)}
    else:
        nodes = [node(inner, ["x"], "e"), node("ReduceProd", ["e"], "z", axes=[2], keepdims=1)]
        init = None
    return model(nodes, X, ["z"] + (["e"] if leak else []), init, opset=opset)


CASES += [
    Case("factor_with_one", factor_with_one(), negatives=[factor_with_one(b_constant=False),
                                                          factor_with_one(other=True), factor_with_one(negative=True)]),
    Case("square_minus_product", square_minus_product(), negatives=[square_minus_product(leak=True),
                                                                    square_minus_product(sum_op="Mul")],
         edges=("zero", "negative", "small"), scale=2.0),
    Case("shift_after_sum", shift_after_sum(), negatives=[shift_after_sum("RIGHT")]),
    Case("exp_of_sum", exp_of_sum(), negatives=[exp_of_sum(leak=True), exp_of_sum(inner="Log")],
         edges=("zero", "negative", "small"), scale=1.0),
    Case("exp_of_sum_axes_input", exp_of_sum(opset=18), negatives=[exp_of_sum(opset=18, leak=True)],
         edges=("zero", "negative", "small"), scale=1.0),
]
