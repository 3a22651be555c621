"""Layout rules: transposes that compose or cancel (also across an element-wise operator between them), view
operators (Reshape, Flatten, Squeeze, Unsqueeze: the same elements in the same order under a new shape) that
chain into one Reshape or vanish, and a Softmax that ignores a shift constant along its axis (see engine.py
for what a rule promises)."""

from __future__ import annotations

import numpy as np

from ... import ops
from ...ir.graph import Node, Value
from ...ops.base import normalize_axis
from ...ops.softmax import SINGLE_AXIS_SINCE
from .engine import Builder, Rule
from .identities import keeps, out, same_type, static
from .pattern import Const, Match, P, Var, is_float

VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")
SHAPE_INPUT = ("Reshape", "Squeeze", "Unsqueeze")   # the shape, or the axes (since opset 13), as a second input
DATA_ONLY = ("Flatten", "Squeeze", "Unsqueeze")     # Flatten, axes as an attribute (before 13), or no axes
# One input, one output element per input element, and no dependence on where the element is: such an
# operator commutes with any permutation of the axes.
UNARY = ("Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Gelu",
         "Softplus", "Softsign", "Mish", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Sign", "Floor",
         "Ceil", "Round", "Sin", "Cos", "Not", "Cast")


# --- transposes -------------------------------------------------------------------------------------------
def perm(node: Node) -> list[int]:
    """A Transpose's permutation (reversed axes when it has none)."""
    return ops.get("Transpose").perm(node, len(node.inputs[0].shape))


def composed(m: Match) -> list[int]:
    """The single permutation of Transpose(..Transpose(x, p1).., p2): output axis i is x's axis p1[p2[i]]."""
    first = perm(m.node("inner"))
    return [first[a] for a in perm(m.root)]


def ranked(m: Match) -> bool:
    return m["x"].shape is not None


def _transposed(b: Builder, x: Value, order: list[int]) -> Value:
    """x under `order`: x itself for the identity."""
    return x if order == sorted(order) else b.op("Transpose", x, perm=order)


def _transpose_once(b: Builder, m: Match) -> Value:
    return _transposed(b, m["x"], composed(m))


def _unary_first(b: Builder, m: Match) -> Value:
    """The element-wise operator applied before the one composed transpose (or with none left)."""
    unary = m.node("unary")
    return b.op(unary.op_type, _transposed(b, m["x"], composed(m)), **unary.attrs)


# --- views ------------------------------------------------------------------------------------------------
def reshapable(m: Match) -> bool:
    """The chain's result has a static shape that a Reshape constant can spell (no zero extent, which a
    Reshape would read as "copy this dimension"), and Reshape takes its shape as an input (opset 5 on)."""
    return static(m) and 0 not in out(m).shape and m.root.opset >= 5


def no_change(m: Match) -> bool:
    """A view whose result has its input's shape (and so its elements in the same order)."""
    return same_type(m.root.inputs[0], out(m))


def _first_input(b: Builder, m: Match) -> Value:
    return m.root.inputs[0]


def _reshaped(b: Builder, m: Match) -> Value:
    """The inner view's input under the chain's result shape: itself when that is its shape."""
    x = m.node("inner").inputs[0]
    return x if same_type(x, out(m)) else b.op("Reshape", x, b.const(np.array(out(m).shape, np.int64)))


# --- softmax ----------------------------------------------------------------------------------------------
def normalised_axes(node: Node, rank: int) -> range:
    """The axes a Softmax/LogSoftmax normalises over: `axis` (since 13), or `axis` and after (before 13)."""
    single = node.opset >= SINGLE_AXIS_SINCE
    axis = normalize_axis(node, int(node.attr("axis", -1 if single else 1)), rank)
    return range(axis, axis + 1) if single else range(axis, rank)


def constant_along_axes(m: Match) -> bool:
    """A finite float shift that does not enlarge x and has extent 1 (or none) on every normalised axis."""
    x, c = m["x"], m.array("c")
    if not (is_float(x) and same_type(x, m.node("shift").outputs[0]) and np.all(np.isfinite(c))):
        return False
    extents = (1,) * (len(x.shape) - c.ndim) + c.shape
    return all(extents[a] == 1 for a in normalised_axes(m.root, len(x.shape)))


def _unshifted(b: Builder, m: Match) -> Value:
    return b.op(m.root.op_type, m["x"], **m.root.attrs)


RULES: list[Rule] = [
    Rule("transpose_transpose", "layout", P("Transpose", P("Transpose", Var("x"), name="inner")), _transpose_once,
         ranked, summary="Transpose(Transpose(x, p1), p2) -> one Transpose by the composed permutation, or x when "
                         "that is the identity"),
    Rule("transpose_identity", "layout", P("Transpose", Var("x")), lambda b, m: m["x"],
         lambda m: keeps("x")(m) and perm(m.root) == sorted(perm(m.root)),
         summary="Transpose(x) by the identity permutation (a rank-0 or rank-1 x by default) -> x"),
    Rule("transpose_through_unary", "layout",
         P("Transpose", P(UNARY, P("Transpose", Var("x"), name="inner"), name="unary")), _unary_first, ranked,
         summary="Transpose(u(Transpose(x, p1)), p2) for an element-wise u -> u(Transpose(x, p1 then p2)), or u(x) "
                 "when they cancel: one transpose or none instead of two"),
    Rule("view_noop", "layout", P(VIEWS), _first_input, no_change,
         summary="Reshape, Flatten, Squeeze or Unsqueeze to the input's own (static) shape -> the input"),
    Rule("view_chain", "layout", P(SHAPE_INPUT, P(VIEWS, name="inner"), Var("s")), _reshaped, reshapable,
         summary="a Reshape/Squeeze/Unsqueeze (shape or axes as an input) of any view -> one Reshape to the static "
                 "result shape, or the first view's input when that is its shape"),
    Rule("view_chain_unary", "layout", P(DATA_ONLY, P(VIEWS, name="inner")), _reshaped, reshapable,
         summary="a Flatten, or a Squeeze/Unsqueeze without an axes input, of any view -> one Reshape to the static "
                 "result shape, or the first view's input when that is its shape"),
    Rule("softmax_shift", "layout",
         P(("Softmax", "LogSoftmax"), P(("Add", "Sub"), Var("x"), Const("c"), name="shift")), _unshifted,
         constant_along_axes, exact=False, rtol=1e-5, atol=1e-6,
         summary="Softmax/LogSoftmax(x + c or x - c) -> of x, for a finite constant c with extent 1 on the "
                 "normalised axes (never a mask varying along them); within the rounding of x + c (an ulp of "
                 "|x| + |c| per logit), and free of its overflow: default, as the result is the exact one"),
]
