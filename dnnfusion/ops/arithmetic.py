"""Elementwise arithmetic: Add, Sub, Mul, Div, Pow, Mod, Sum, Mean, Max, Min (One-to-One; broadcasting makes
the broadcast input One-to-Many, which the ECG accounts for)."""

from __future__ import annotations

import numpy as np

from ..kir.expr import Call, Cast, Expr, Lit, binary, call, cast, lit, select

from ..ir.graph import Node
from .base import Algebra, Binary, ChannelAffine, Variadic
from .registry import register

SUM_OPS = frozenset({"Add", "Sub", "Sum"})
FLOATS = ("float", "double")
# Integer types whose + - * << C promotes to (signed) int or overflows: computed in this unsigned type, which wraps.
MODULAR = {"int8_t": "uint32_t", "uint8_t": "uint32_t", "int16_t": "uint32_t", "uint16_t": "uint32_t",
           "int32_t": "uint32_t", "int64_t": "uint64_t"}


def wrapping(op: str, a: Expr, b: Expr) -> Expr:
    """a op b for + - * << in a's type, integers wrapping around on overflow as numpy's do."""
    wide = MODULAR.get(a.ctype)
    if wide is None:
        return binary(op, a, b)
    return cast(binary(op, modular(a, wide), modular(b, wide) if op != "<<" else cast(b, wide)), a.ctype)


def modular(x: Expr, wide: str) -> Expr:
    """x in the unsigned type `wide`, for + - * (<< a) whose result keeps only x's low bits: a wrapped result
    (wide, narrowed to x's type) is taken before the narrowing."""
    return x.x if isinstance(x, Cast) and x.x.ctype == wide else cast(x, wide)


def is_signed(ctype_: str) -> bool:
    """Whether a C type is a signed integer."""
    return ctype_.startswith("int")


def divisor_guard(b: Expr, result: Expr, trapping: bool) -> Expr:
    """`result` of an integer division by b, 0 where b is 0 (or -1 too when `trapping`: INT_MIN / -1 traps)."""
    zero = binary("==", b, lit(0, b.ctype))
    if trapping:
        zero = binary("||", zero, binary("==", b, lit(-1, b.ctype)))
    return select(zero, lit(0, result.ctype), result)


def floored_fmod(a: Expr, b: Expr) -> Expr:
    """numpy's float remainder: fmod moved to b's sign, a zero result signed like b."""
    r = call("fmod", a, b)
    zero = lit(0, a.ctype)
    signed_zero = select(binary("<", b, zero), -zero, zero)
    moved = select(binary("!=", binary("<", r, zero), binary("<", b, zero)), r + b, r)
    return select(binary("==", r, zero), signed_zero, moved)


def maximum(a: Expr, b: Expr, op: str = ">=") -> Expr:
    """numpy's maximum (op '>=') or minimum (op '<='): nan when either is nan."""
    if isinstance(b, Lit) and b.value == b.value:      # a bound that is not nan: only a nan `a` needs keeping
        return select(binary("<" if op == ">=" else ">", a, b), b, a)
    keep_a = binary(op, a, b)
    if a.ctype in FLOATS:
        keep_a = binary("||", keep_a, call("isnan", a, ctype_="bool"))
    return select(keep_a, a, b)


def constant_operand(node: Node) -> tuple[int, np.ndarray] | None:
    """(position of x, the other operand as a float64 array of y's rank) when exactly one operand is a float
    constant and the other, x, already has y's shape (so the op does not broadcast x); otherwise None."""
    y = node.outputs[0]
    if len(node.inputs) != 2 or y.dtype not in (np.float32, np.float64) or not y.is_static:
        return None
    for x_at, c_at in ((0, 1), (1, 0)):
        x, c = node.inputs[x_at], node.inputs[c_at]
        if x.const is None and c.const is not None and tuple(x.shape) == tuple(y.shape) and c.const.ndim <= len(y.shape):
            return x_at, c.const.astype(np.float64).reshape((1,) * (len(y.shape) - c.const.ndim) + c.const.shape)
    return None


class Adding:
    """What Add and the variadic Sum share: a + b (integers wrap), and x + c as a per-channel affine map."""

    algebra = Algebra(associative=True, commutative=True)

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        return wrapping("+", a, b)

    def channel_affine(self, node: Node) -> ChannelAffine | None:
        found = constant_operand(node)
        return ChannelAffine(found[0], np.ones_like(found[1]), found[1]) if found else None


@register
class Add(Adding, Binary):
    op_type = "Add"


@register
class Sub(Binary):
    op_type = "Sub"

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        return wrapping("-", a, b)

    def channel_affine(self, node: Node) -> ChannelAffine | None:
        """x - c, or c - x = x * -1 + c."""
        found = constant_operand(node)
        if found is None:
            return None
        x_at, c = found
        return ChannelAffine(0, np.ones_like(c), -c) if x_at == 0 else ChannelAffine(1, -np.ones_like(c), c)


@register
class Mul(Binary):
    op_type = "Mul"
    algebra = Algebra(associative=True, commutative=True, distributes_over=SUM_OPS)

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        return wrapping("*", a, b)

    def channel_affine(self, node: Node) -> ChannelAffine | None:
        found = constant_operand(node)
        return ChannelAffine(found[0], found[1], np.zeros_like(found[1])) if found else None


@register
class Div(Binary):
    op_type = "Div"
    algebra = Algebra(distributes_over=SUM_OPS)  # right-distributive: (a + b) / c = a / c + b / c

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if np.issubdtype(a.dtype, np.integer):     # exact truncation toward zero (through float64 it would not be)
            with np.errstate(all="ignore"):         # x / 0 gives 0, INT_MIN / -1 wraps to INT_MIN
                return np.floor_divide(a, b) + ((np.mod(a, b) != 0) & ((a < 0) != (b < 0)))
        return a / b

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        """Integers truncate toward zero (C's division); x / 0 gives 0 instead of trapping."""
        if a.ctype in FLOATS:
            return a / b
        quotient = a / b
        if a.ctype in ("int32_t", "int64_t"):       # INT_MIN / -1 traps in C; numpy wraps to INT_MIN
            quotient = select(binary("==", b, lit(-1, b.ctype)), wrapping("-", lit(0, a.ctype), a), quotient)
        return divisor_guard(b, quotient, False)

    def channel_affine(self, node: Node) -> ChannelAffine | None:
        """x / c as x * (1 / c), for finite non-zero c (one rounding apart, well inside tolerance)."""
        found = constant_operand(node)
        if found is None or found[0] != 0 or not np.all(np.isfinite(found[1]) & (found[1] != 0)):
            return None
        return ChannelAffine(0, 1.0 / found[1], np.zeros_like(found[1]))


SMALL_POWERS = (2, 3, 4)


@register
class Pow(Binary):
    op_type = "Pow"

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if np.issubdtype(a.dtype, np.integer):
            return np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)
        return np.power(a, b.astype(a.dtype))

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        """A float raised to a literal 2, 3 or 4 is a product (vectorisable, unlike a call to powf; GELU's tanh
        form cubes every element of the FFN)."""
        if a.ctype in FLOATS and isinstance(b, Lit) and b.value in SMALL_POWERS:
            product = a
            for _ in range(int(b.value) - 1):
                product = product * a
            return product
        if a.ctype in FLOATS:
            return call("pow", a, cast(b, a.ctype))
        return cast(call("pow", cast(a, "double"), cast(b, "double")), a.ctype)


@register
class Mod(Binary):
    """fmod=0: a - floor(a / b) * b (sign of b); fmod=1: a - trunc(a / b) * b (sign of a, C fmod)."""

    op_type = "Mod"

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):   # x mod 0 is nan for floats and 0 for integers, as numpy gives
            return np.fmod(a, b) if node.attr("fmod", 0) else np.mod(a, b)

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        truncated = bool(node.attr("fmod", 0))
        if a.ctype in FLOATS:
            return call("fmod", a, b) if truncated else floored_fmod(a, b)
        trapping = a.ctype in ("int32_t", "int64_t")       # INT_MIN % -1 traps; the result is 0 anyway
        if truncated or not is_signed(a.ctype):
            return divisor_guard(b, binary("%", a, b), trapping)
        return divisor_guard(b, Call("floormod", (a, b), a.ctype), trapping)


@register
class Sum(Adding, Variadic):
    op_type = "Sum"


@register
class Mean(Variadic):
    op_type = "Mean"
    algebra = Algebra(commutative=True)

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def finish(self, node: Node, acc: np.ndarray, count: int) -> np.ndarray:
        return acc / count

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        return wrapping("+", a, b)

    def channel_affine(self, node: Node) -> ChannelAffine | None:
        found = constant_operand(node)
        return ChannelAffine(found[0], np.ones_like(found[1]), found[1]) if found else None

    def finish_expr(self, node: Node, acc: Expr, count: int) -> Expr:
        if acc.ctype in FLOATS:
            return acc / lit(count, acc.ctype)
        return cast(cast(acc, "double") / lit(count, "double"), acc.ctype)


@register
class Max(Variadic):
    op_type = "Max"
    algebra = Algebra(associative=True, commutative=True)

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(a, b)

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        return maximum(a, b)


@register
class Min(Variadic):
    op_type = "Min"
    algebra = Algebra(associative=True, commutative=True)

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.minimum(a, b)

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        return maximum(a, b, "<=")
