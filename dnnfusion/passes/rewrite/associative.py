"""Rewrite rules of the associative family: constant factors and offsets gathered into one constant, a division by
a constant made a multiplication, and a constant scale moved across a matrix product onto its smaller operand or
folded into constant weights (so an attention's 1/sqrt(d) after Q·Kᵀ first moves onto Q, then into the Q
projection's weights and bias). The conditions on constants and scales shared with the distributive family live
here (see engine.py for what a rule promises)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...ir.graph import Graph, Node, Value
from .engine import Builder, Rule
from .pattern import Const, Match, P, Var, is_float

F64 = np.float64


# --- conditions shared by the algebraic rules ---------------------------------------------------------------
def float_result(m: Match) -> bool:
    """The root computes floating point (the rules reason about IEEE rounding, overflow and NaN)."""
    return is_float(m.root.outputs[0])


def finite_nonzero(a: np.ndarray) -> bool:
    return a.size > 0 and bool(np.all(np.isfinite(a) & (a != 0)))


def normal(a: np.ndarray) -> bool:
    """Every element finite and normal: no overflow to ±inf, no underflow to a subnormal or zero."""
    return bool(np.all(np.isfinite(a) & (np.abs(a) >= np.finfo(a.dtype).tiny)))


def factor(node: Node, c: np.ndarray) -> np.ndarray:
    """What a Mul by `c` multiplies by, or a Div by `c` (in float64)."""
    c = c.astype(F64)
    with np.errstate(divide="ignore"):
        return 1.0 / c if node.op_type == "Div" else c


def signed(node: Node, c: np.ndarray) -> np.ndarray:
    """What an Add of `c` adds, or a Sub of `c` (negation is exact)."""
    return -c if node.op_type == "Sub" else c


def as_scalar(b: Builder, c: np.ndarray) -> Value:
    """The one-element constant `c` as a rank-0 constant (scaling by it never changes a shape)."""
    return b.const(c.reshape(()))


def shrinks(node: Node, c: np.ndarray) -> bool:
    """The Mul/Div `node` by `c` shrinks magnitudes: a scale moved before a sum cannot make it overflow."""
    return bool(np.all(np.abs(factor(node, c)) <= 1))


def grows(node: Node, c: np.ndarray) -> bool:
    """The Mul/Div `node` by `c` grows magnitudes: a scale moved after a sum cannot make it overflow."""
    return bool(np.all(np.abs(factor(node, c)) >= 1))


def scalar_for(c: np.ndarray, v: Value) -> bool:
    """`c` has one element and no more dimensions than `v`: scaling `v` by it does not broadcast."""
    return c.size == 1 and v.shape is not None and c.ndim <= len(v.shape)


def same_side_of_one(a: np.ndarray, b: np.ndarray) -> bool:
    """Elementwise, both factors at least 1 in magnitude or both at most 1: scaling by one then the other
    overflows (or underflows) only where scaling by their product does."""
    a, b = np.broadcast_arrays(np.abs(a), np.abs(b))
    return bool(np.all(((a >= 1) & (b >= 1)) | ((a <= 1) & (b <= 1))))


def same_sign(a: np.ndarray, b: np.ndarray) -> bool:
    """Elementwise, both non-zero with one sign: the sum grows in magnitude, cancels nothing, and x·a + x·b
    is ±inf exactly where x·(a + b) is."""
    return bool(np.all(np.sign(a.astype(F64)) * np.sign(b.astype(F64)) > 0))


def no_cancelling_overflow(a: np.ndarray, b: np.ndarray) -> bool:
    """Elementwise, addends of one sign, or the smaller below half an ulp of the largest finite value (adding it
    never overflows): adding one then the other overflows only where adding their sum does."""
    info = np.finfo(a.dtype)
    half_ulp = np.ldexp(1.0, info.maxexp - info.nmant - 2)      # half the spacing just below the largest finite
    a, b = np.broadcast_arrays(a.astype(F64), b.astype(F64))
    return bool(np.all((np.sign(a) * np.sign(b) >= 0) | (np.minimum(np.abs(a), np.abs(b)) < half_ulp)))


def broadcasts_to_root(m: Match, x: Value, c: np.ndarray) -> bool:
    """`x` combined with the constant `c` has exactly the root's shape (the folded constant broadcasts no larger
    than the result)."""
    shape = m.root.outputs[0].shape
    if x.shape is None or shape is None or None in x.shape:
        return False
    try:
        return np.broadcast_shapes(tuple(x.shape), c.shape) == tuple(shape)
    except ValueError:
        return False


# --- constant factor chains: x scaled by c1 (inner node) then by c2 (root) --------------------------------------
def _factors(m: Match) -> tuple[np.ndarray, np.ndarray]:
    return factor(m.node("inner"), m.array("c1")), factor(m.root, m.array("c2"))


def _folded_scale(m: Match) -> tuple[str, np.ndarray]:
    """The one operator and constant that do both scalings: Div by c1·c2 for two divisions, else Mul."""
    c1, c2 = m.array("c1"), m.array("c2")
    inner, outer = m.node("inner").op_type == "Div", m.root.op_type == "Div"
    with np.errstate(all="ignore"):
        if inner and outer:
            return "Div", c1 * c2
        return "Mul", (c2 / c1 if inner else c1 / c2 if outer else c1 * c2)


def _scale_chain_folds(m: Match) -> bool:
    c1, c2 = m.array("c1"), m.array("c2")
    folded = _folded_scale(m)[1]
    return float_result(m) and finite_nonzero(c1) and finite_nonzero(c2) and same_side_of_one(*_factors(m)) \
        and normal(folded) and broadcasts_to_root(m, m["x"], folded)


def _constant_chain(name: str, outer: str, inner: str, result: str,
                    folded: Callable[[Match], tuple[str, np.ndarray]], folds: Callable[[Match], bool],
                    condition: str) -> Rule:
    """outer(inner(x, c1), c2) -> result: one operator and the constant `folded` gives, where `folds` holds."""
    def build(b: Builder, m: Match) -> Value:
        op, constant = folded(m)
        return b.op(op, m["x"], b.const(constant))

    return Rule(name, "associative", P(outer, P(inner, Var("x"), Const("c1"), name="inner"), Const("c2")),
                build, folds, rtol=1e-6, atol=1e-6, summary=f"{outer}({inner}(x, c1), c2) -> {result}: {condition}")


def _scale_chain(name: str, outer: str, inner: str, result: str) -> Rule:
    return _constant_chain(name, outer, inner, result, _folded_scale, _scale_chain_folds,
                           "finite non-zero constants scaling the same way (both at least 1 in magnitude or both "
                           "at most 1) whose fold is a normal number")


# --- constant offset chains: x shifted by ±c1 (inner node) then by ±c2 (root) -----------------------------------
def _addends(m: Match) -> tuple[np.ndarray, np.ndarray]:
    return signed(m.node("inner"), m.array("c1")), signed(m.root, m.array("c2"))


def _folded_offset(m: Match) -> tuple[str, np.ndarray]:
    """Sub of c1 + c2 for two subtractions, else Add of the signed sum."""
    with np.errstate(all="ignore"):
        if m.node("inner").op_type == m.root.op_type == "Sub":
            return "Sub", m.array("c1") + m.array("c2")
        a1, a2 = _addends(m)
        return "Add", a1 + a2


def _offset_chain_folds(m: Match) -> bool:
    c1, c2 = m.array("c1"), m.array("c2")
    folded = _folded_offset(m)[1]
    return float_result(m) and bool(np.all(np.isfinite(c1)) and np.all(np.isfinite(c2))) and \
        no_cancelling_overflow(*_addends(m)) and bool(np.all(np.isfinite(folded))) and \
        broadcasts_to_root(m, m["x"], folded)


def _offset_chain(name: str, outer: str, inner: str, result: str) -> Rule:
    return _constant_chain(name, outer, inner, result, _folded_offset, _offset_chain_folds,
                           "finite constants and fold, the two offsets not both huge (>= half an ulp of the largest "
                           "float) with opposite signs; rounding: a few ulps of the largest operand")


# --- division by a constant as a multiplication ------------------------------------------------------------------
def _reciprocal(c: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.reciprocal(c)


def _exact_reciprocal(c: np.ndarray) -> bool:
    """Every element ±2^k with 2^-k representable: x·(1/c) is x/c bit for bit."""
    mantissa = np.frexp(c)[0]
    return finite_nonzero(c) and bool(np.all(np.abs(mantissa) == 0.5)) and bool(np.all(np.isfinite(_reciprocal(c))))


def _times_reciprocal(b: Builder, m: Match) -> Value:
    return b.op("Mul", m["x"], b.const(_reciprocal(m.array("c"))))


def _divides_by_power_of_two(m: Match) -> bool:
    return float_result(m) and _exact_reciprocal(m.array("c"))


def _divides_by_constant(m: Match) -> bool:
    c = m.array("c")
    return float_result(m) and finite_nonzero(c) and normal(_reciprocal(c))


# --- a scale across a matrix product -----------------------------------------------------------------------------
LAYOUT = ("Reshape", "Transpose", "Squeeze", "Unsqueeze")


@dataclass
class WeightsPath:
    """From a value back to a MatMul with a constant operand: the layout operators in between (nearest the value
    first), the bias Add if any (and which of its inputs is the constant bias), and the product (and which operand
    is the constant weight)."""

    layout: list[Node]
    add: Node | None
    bias_at: int
    matmul: Node
    weight_at: int

    @property
    def nodes(self) -> list[Node]:
        return [*self.layout, *([self.add] if self.add else []), self.matmul]


def _in_use(node: Node, graph: Graph | None = None) -> bool:
    """Whether anything reads the node's outputs (a reader an earlier rewrite left behind, its outputs unread, is
    not in use); with `graph`, graph outputs count too."""
    return any(v is not None and (v.consumers or (graph is not None and any(v is o for o in graph.outputs)))
               for v in node.outputs)


def _private_producer(value: Value, reader: Node) -> Node | None:
    """The producer of `value` if `reader` is its only reader in use and `value` its only output."""
    node = value.producer
    if node is None or len(node.outputs) != 1 or any(n is not reader and _in_use(n) for n in value.consumers):
        return None
    return node


def weights_path(value: Value, reader: Node) -> WeightsPath | None:
    """The path from `value` (read by `reader`) through single-reader layout operators to MatMul(x, W) or
    Add(MatMul(x, W), bias), W and bias constants; None if there is none. (`private` checks graph outputs.)"""
    layout = []
    while (node := _private_producer(value, reader)) is not None and node.op_type in LAYOUT:
        layout.append(node)
        reader, value = node, node.inputs[0]
    add, bias_at = None, 0
    if node is not None and node.op_type == "Add":
        constant = [i for i, v in enumerate(node.inputs) if v.const is not None]
        if len(constant) != 1:
            return None
        add, bias_at = node, constant[0]
        node = _private_producer(node.inputs[1 - bias_at], node)
    if node is None or node.op_type != "MatMul":
        return None
    constant = [i for i, v in enumerate(node.inputs) if v.const is not None]
    return WeightsPath(layout, add, bias_at, node, constant[0]) if len(constant) == 1 else None


def private(path: WeightsPath, reader: Node, graph: Graph) -> bool:
    """No value on the path is a graph output, and the readers the walk took for leftovers really are unused."""
    own = [reader, *path.nodes]
    for node in path.nodes:
        out = node.outputs[0]
        if any(out is o for o in graph.outputs) or \
                any(_in_use(n, graph) for n in out.consumers if all(n is not k for k in own)):
            return False
    return True


def _operand_to_scale(m: Match) -> int | None:
    """Which MatMul operand to scale instead of the product: the cheaper of those where the scale will not survive
    as an operator (a constant, folded now, or a projection by constant weights, folded next by
    matmul_scale_into_weights), if it has fewer elements than the product. A scale that would survive stays on
    the product, where fusion takes it into the product's kernel as an epilogue for free."""
    matmul = m.node("matmul")
    operands, product = matmul.inputs, matmul.outputs[0]
    if not all(v.is_static for v in (*operands, product)):
        return None
    costs = [0 if v.const is not None else v.numel if weights_path(v, matmul) else product.numel for v in operands]
    best = int(np.argmin(costs))
    return best if costs[best] < product.numel else None


def _scale_moves_onto_operand(m: Match) -> bool:
    """A shrinking scalar, an operand to move it onto, and (onto a projection) a path whose weights it can
    fold into next."""
    c = m.array("c")
    if not (float_result(m) and finite_nonzero(c) and scalar_for(c, m.node("matmul").outputs[0]) and
            shrinks(m.root, c)):
        return False
    matmul, at = m.node("matmul"), _operand_to_scale(m)
    if at is None:
        return False
    path = weights_path(matmul.inputs[at], matmul) if matmul.inputs[at].const is None else None
    return path is None or private(path, matmul, m.graph)


def _scale_operand(b: Builder, m: Match) -> Value:
    matmul, at = m.node("matmul"), _operand_to_scale(m)
    inputs = list(matmul.inputs)
    inputs[at] = b.op(m.root.op_type, inputs[at], as_scalar(b, m.array("c")))
    return b.op("MatMul", *inputs)


def _scale_folds_into_weights(m: Match) -> bool:
    """The scale is a shrinking scalar and the path exists. The pattern language has no repetition, so the path's
    nodes are added to the match's covered nodes here: the engine then counts them as removed."""
    c = m.array("c")
    if not (float_result(m) and finite_nonzero(c) and scalar_for(c, m["y"]) and shrinks(m.root, c)):
        return False
    path = weights_path(m["y"], m.root)
    if path is None or not private(path, m.root, m.graph):
        return False
    m.covered.extend(n for n in path.nodes if all(n is not k for k in m.covered))
    return True


def _scaled(b: Builder, m: Match, value: Value) -> Value:
    """A new constant: `value`'s array multiplied or divided (as the root does) by the scalar c."""
    c = m.array("c").reshape(())
    with np.errstate(all="ignore"):
        array = value.const / c if m.root.op_type == "Div" else value.const * c
    return b.const(array.astype(value.const.dtype, copy=False))


def _fold_into_weights(b: Builder, m: Match) -> Value:
    path = weights_path(m["y"], m.root)
    inputs = list(path.matmul.inputs)
    inputs[path.weight_at] = _scaled(b, m, inputs[path.weight_at])
    value = b.op("MatMul", *inputs)
    if path.add is not None:
        inputs = list(path.add.inputs)
        inputs[path.bias_at], inputs[1 - path.bias_at] = _scaled(b, m, inputs[path.bias_at]), value
        value = b.op("Add", *inputs)
    for node in reversed(path.layout):
        value = b.op(node.op_type, value, *node.inputs[1:], **node.attrs)
    return value


_SCALE = ("Mul", "Div")
_MOVE_NOTE = ("differs from the original only in rounding (relative to the sum of |products|, like the product's "
              "own) and where the unscaled product overflows (original ±inf, rewrite finite)")

RULES: list[Rule] = [
    _scale_chain("mul_chain", "Mul", "Mul", "Mul(x, c1*c2)"),
    _scale_chain("div_chain", "Div", "Div", "Div(x, c1*c2)"),
    _scale_chain("div_of_mul_chain", "Div", "Mul", "Mul(x, c1/c2)"),
    _scale_chain("mul_of_div_chain", "Mul", "Div", "Mul(x, c2/c1)"),
    _offset_chain("add_chain", "Add", "Add", "Add(x, c1+c2)"),
    _offset_chain("sub_of_add_chain", "Sub", "Add", "Add(x, c1-c2)"),
    _offset_chain("add_of_sub_chain", "Add", "Sub", "Add(x, c2-c1)"),
    _offset_chain("sub_chain", "Sub", "Sub", "Sub(x, c1+c2)"),
    Rule("div_by_power_of_two", "associative", P("Div", Var("x"), Const("c")), _times_reciprocal,
         _divides_by_power_of_two, always=True,
         summary="Div(x, c) -> Mul(x, 1/c) for c a power of two with a representable reciprocal (bit for bit; kept "
                 "at equal FLOPs: a multiply is cheaper than a divide)"),
    Rule("div_to_reciprocal", "associative", P("Div", Var("x"), Const("c")), _times_reciprocal,
         _divides_by_constant, exact=False, default=False, always=True, rtol=1e-6, atol=1e-6,
         summary="Div(x, c) -> Mul(x, 1/c) for finite non-zero c with a normal reciprocal: up to ~1.5 ulp from the "
                 "correctly rounded quotient, so off by default"),
    Rule("matmul_scale_to_operand", "associative",
         P(_SCALE, P("MatMul", Var("a"), Var("b"), name="matmul"), Const("c"), name="scale"),
         _scale_operand, _scale_moves_onto_operand, exact=False, rtol=1e-5, atol=1e-5,
         summary="Mul/Div(MatMul(A, B), scalar c) -> MatMul(Mul/Div(A, c), B) (or onto B) when that operand has "
                 "fewer elements than the product, is a constant or a projection by constant weights (so the "
                 "scale folds away) and |c| shrinks; " + _MOVE_NOTE),
    Rule("matmul_scale_into_weights", "associative", P(_SCALE, Var("y"), Const("c"), name="scale"),
         _fold_into_weights, _scale_folds_into_weights, exact=False, rtol=1e-5, atol=1e-5,
         summary="Mul/Div(scalar c) of [Reshape/Transpose/Squeeze/Unsqueeze of] MatMul(x, W) [+ bias], W and bias "
                 "constants, single-reader path -> the same with W and bias scaled, when |c| shrinks; " + _MOVE_NOTE),
]
