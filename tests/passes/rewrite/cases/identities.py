"""Cases for passes/rewrite/identities.py: each rule's smallest graph (both operand orders where the operator
commutes) and graphs where a precondition fails (a broadcast that enlarges x, a constant that is not exactly
the neutral element, an intermediate with another reader, a dtype the rule is not about)."""

import numpy as np
from onnx import TensorProto, helper

from tests.helpers import FLOAT, INT64
from tests.passes.rewrite.harness import Case, model

S = [2, 3, 4]
X = [("x", FLOAT, S)]
XY = X + [("y", FLOAT, S)]
FINITE = ("zero", "negative", "large", "small")   # every edge but NaN and the infinities


def node(op: str, inputs: list[str], output: str, **attrs):
    return helper.make_node(op, inputs, [output], **attrs)


def f32(value, shape=()) -> np.ndarray:
    return np.full(shape, value, np.float32)


def binary(op: str, c: np.ndarray, x_first: bool = True, inputs=X):
    """z = op(x, c) (or op(c, x)) for a constant c."""
    return model([node(op, ["x", "c"] if x_first else ["c", "x"], "z")], inputs, ["z"], {"c": c})


def chain(*ops: str, inputs=X, leak: bool = False, attrs: dict | None = None):
    """x -> ops[0] -> ... -> z, one-input operators; `leak`: the first result is a graph output too."""
    names = [f"t{i}" for i in range(len(ops) - 1)] + ["z"]
    nodes = [node(op, ["x" if i == 0 else names[i - 1]], names[i], **(attrs or {}).get(i, {}))
             for i, op in enumerate(ops)]
    return model(nodes, inputs, ["z"] + (["t0"] if leak else []))


def neg_inside(op: str, order: tuple[str, str], leak: bool = False):
    """z = op(a, b) where "n" is Neg(y): e.g. order ("x", "n") is op(x, Neg(y))."""
    nodes = [node("Neg", ["y"], "n"), node(op, list(order), "z")]
    return model(nodes, XY, ["z"] + (["n"] if leak else []))


def reciprocal_times(leak: bool = False):
    """z = Reciprocal(y) * x."""
    return model([node("Reciprocal", ["y"], "r"), node("Mul", ["r", "x"], "z")], XY, ["z"] + (["r"] if leak else []))


def pair(outer: str, inner: str, leak: bool = False):
    """z = outer(inner(x, y))."""
    nodes = [node(inner, ["x", "y"], "t"), node(outer, ["t"], "z")]
    return model(nodes, XY, ["z"] + (["t"] if leak else []))


def casts(*types: int, inputs=X):
    """x -> Cast(to=types[0]) -> Cast(to=types[1]) ... -> z."""
    return chain(*["Cast"] * len(types), inputs=inputs, attrs={i: {"to": t} for i, t in enumerate(types)})


def negs_times(leak: bool = False):
    """z = Neg(x) * Neg(y); `leak`: Neg(y) is a graph output too."""
    nodes = [node("Neg", ["x"], "p"), node("Neg", ["y"], "q"), node("Mul", ["p", "q"], "z")]
    return model(nodes, XY, ["z"] + (["q"] if leak else []))


def where(cond: np.ndarray | None, a_shape=S, b_shape=S, same: bool = False):
    """z = Where(c, a, b), c a constant (or an input when None), or Where(c, a, a) when `same`."""
    inputs = [("a", FLOAT, a_shape), ("b", FLOAT, b_shape)] + ([("c", TensorProto.BOOL, S)] if cond is None else [])
    return model([node("Where", ["c", "a", "a" if same else "b"], "z")], inputs, ["z"],
                 {} if cond is None else {"c": cond})


ONES, ZEROS = f32(1, [4]), f32(0, [4])
NEAR_ONE = np.array([1, 1, 1, 1 + 2 ** -23], np.float32)
TRUE, FALSE = np.ones(S, bool), np.zeros(S, bool)
MIXED = np.array([True, False, True, True]) & np.ones(S, bool)
X_INT = [("x", INT64, S)]
X_SMALL = [("x", FLOAT, [4])]   # a constant of shape S would enlarge it
DOUBLE, HALF = TensorProto.DOUBLE, TensorProto.FLOAT16

CASES = [
    Case("add_zero", binary("Add", ZEROS),
         negatives=[binary("Add", f32(0, S), inputs=X_SMALL), binary("Add", f32(1e-30, [4]))]),
    Case("add_zero", binary("Add", f32(-0.0), x_first=False), id="add_zero_left"),
    Case("add_zero", binary("Add", np.zeros(4, np.int64), inputs=X_INT), id="add_zero_int"),
    Case("sub_zero", binary("Sub", ZEROS),
         negatives=[binary("Sub", ZEROS, x_first=False), binary("Sub", f32(0, S), inputs=X_SMALL)]),
    Case("mul_one", binary("Mul", ONES, x_first=False),
         negatives=[binary("Mul", NEAR_ONE), binary("Mul", f32(1, S), inputs=X_SMALL)]),
    Case("div_one", binary("Div", f32(1)), negatives=[binary("Div", f32(1), x_first=False), binary("Div", NEAR_ONE)]),
    Case("pow_one", binary("Pow", f32(1)),
         negatives=[binary("Pow", NEAR_ONE), binary("Pow", f32(1, S), inputs=X_SMALL)]),
    Case("pow_two", binary("Pow", f32(2)),
         negatives=[binary("Pow", np.array(2, np.int64), inputs=X_INT), binary("Pow", f32(2, S), inputs=X_SMALL)]),
    Case("pow_three", binary("Pow", f32(3)),
         negatives=[binary("Pow", f32(3, S), inputs=X_SMALL), binary("Pow", f32(3.0001))]),
    Case("pow_half", binary("Pow", f32(0.5)), edges=FINITE,
         negatives=[binary("Pow", f32(0.5, S), inputs=X_SMALL),
                    binary("Pow", np.array([0.5, 0.5, 0.5, 0.25], np.float32))]),
    Case("pow_minus_one", binary("Pow", f32(-1, [4])),
         negatives=[binary("Pow", f32(-1, S), inputs=X_SMALL), binary("Pow", np.array(-1, np.int64), inputs=X_INT)]),
    Case("mul_reciprocal", reciprocal_times(), negatives=[reciprocal_times(leak=True)]),
    Case("neg_neg", chain("Neg", "Neg"), negatives=[chain("Neg", "Neg", leak=True), chain("Neg", "Abs")]),
    Case("sub_neg", neg_inside("Sub", ("x", "n")),
         negatives=[neg_inside("Sub", ("n", "x")), neg_inside("Sub", ("x", "n"), leak=True)]),
    Case("add_neg", neg_inside("Add", ("n", "x")), negatives=[neg_inside("Add", ("x", "n"), leak=True)]),
    Case("neg_sub", pair("Neg", "Sub"), negatives=[pair("Neg", "Sub", leak=True), pair("Neg", "Add")]),
    Case("neg_mul_neg", negs_times(), negatives=[negs_times(leak=True), neg_inside("Mul", ("x", "n"))]),
    Case("reciprocal_reciprocal", chain("Reciprocal", "Reciprocal"),
         negatives=[chain("Reciprocal", "Reciprocal", leak=True), chain("Reciprocal", "Sqrt")]),
    Case("identity", chain("Identity", "Relu"), negatives=[chain("Relu", "Identity")]),
    Case("nonnegative_idempotent", chain("Relu", "Relu"),
         negatives=[chain("Tanh", "Relu"), chain("Abs", "Relu", inputs=X_INT)]),
    Case("nonnegative_idempotent", chain("Exp", "Abs", leak=True), id="abs_of_exp_read_elsewhere"),
    Case("abs_neg", chain("Neg", "Abs"), negatives=[chain("Neg", "Abs", leak=True), chain("Neg", "Relu")]),
    Case("cast_noop", casts(FLOAT), negatives=[casts(DOUBLE)]),
    Case("cast_cast", casts(DOUBLE, HALF),
         negatives=[casts(HALF, FLOAT), casts(TensorProto.INT32, FLOAT), casts(DOUBLE, TensorProto.STRING)]),
    Case("cast_cast", casts(DOUBLE, FLOAT), id="cast_cast_round_trip"),
    Case("cast_cast", casts(TensorProto.INT32, DOUBLE, inputs=[("x", TensorProto.INT16, S)]),
         id="cast_cast_int_through_int"),
    Case("where_constant", where(TRUE, b_shape=[4]), negatives=[where(MIXED), where(TRUE, a_shape=[4])]),
    Case("where_constant", where(FALSE, a_shape=[4]), id="where_constant_false"),
    Case("where_same", where(None, same=True), negatives=[where(None, a_shape=[4], same=True), where(None)]),
    Case("mul_zero", binary("Mul", ZEROS, x_first=False), edges=FINITE,
         negatives=[binary("Mul", np.zeros(4, np.int64), inputs=X_INT), binary("Mul", f32(1e-38, [4]))]),
]
