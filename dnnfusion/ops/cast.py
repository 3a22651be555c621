"""Cast and CastLike: elementwise type conversion (One-to-One) between every element type numpy and ml_dtypes
represent — float8/float4/bfloat16, int4/int2, bool, strings — with the float8 `saturate` rules and the
float8e8m0 `round_mode`."""

from __future__ import annotations

import math
from typing import Sequence

import ml_dtypes
import numpy as np

from ..kir.expr import Expr, Index, cast, ctype
from ..kir.kernel import Reader
from ..ir import dtypes
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType
from .registry import register

STRING = np.dtype(object)
FLOAT8 = frozenset(np.dtype(t) for t in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz,
                                         ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz))
E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
ROUND_MODES = ("up", "down", "nearest")


def is_integer(dtype: np.dtype) -> bool:
    """True for numpy integers and the ml_dtypes sub-byte integers (int4, uint4, int2, ...)."""
    return dtype.kind in "iu" or dtype.name.startswith(("int", "uint"))


def is_ml_dtype(dtype: np.dtype) -> bool:
    """True for the element types that ml_dtypes adds to numpy (bfloat16, float8, int4, ...)."""
    return dtype.type.__module__.startswith("ml_dtypes")


def converted(x: np.ndarray, target: np.dtype) -> np.ndarray:
    """x as `target`, numpy's conversion; between two ml_dtypes types (which ml_dtypes does not always
    convert directly) through float32 or int64, which hold every value of those types exactly. Sub-byte
    integer targets wrap like the wider integers do (our arithmetic: ml_dtypes' float conversion changed)."""
    if is_ml_dtype(target) and is_integer(target):
        return wrapped(x, target)
    if is_ml_dtype(x.dtype) and is_ml_dtype(target) and x.dtype != target:
        x = x.astype(np.int64 if is_integer(x.dtype) else np.float32)
    with np.errstate(all="ignore"):   # out-of-range floats to integers are undefined by the spec
        return x.astype(target)


def wrapped(x: np.ndarray, target: np.dtype) -> np.ndarray:
    """x as the sub-byte integer type `target` (int4, uint2, ...) as onnxruntime converts: floats round to the
    nearest integer, ties away from zero (nan and inf, undefined by the spec, become 0), then the low bits are kept,
    two's complement for signed targets."""
    if is_integer(x.dtype):
        whole = x.astype(np.int64)
    else:
        with np.errstate(all="ignore"):
            values = x.astype(np.float64)
            values = np.trunc(values + np.copysign(0.5, values))
            whole = np.where(np.isfinite(values), np.fmod(values, 2.0 ** 32), 0).astype(np.int64)
    bits = ml_dtypes.iinfo(target).bits
    low = whole & ((1 << bits) - 1)
    if ml_dtypes.iinfo(target).min < 0:
        low = np.where(low >= 1 << (bits - 1), low - (1 << bits), low)
    return low.astype(np.int8).astype(target)


def saturated(x: np.ndarray, target: np.dtype) -> np.ndarray:
    """x clipped to the finite range of the float8 type `target` (inf too; nan stays nan)."""
    if x.dtype.itemsize < 4:
        x = x.astype(np.float32)   # exact for every type this narrow, and numpy's clip works on it
    limit = float(ml_dtypes.finfo(target).max)
    return np.clip(x, -limit, limit)


def to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """Power-of-two float8e8m0 from the exponent of x as float32 (sign ignored), rounded per round_mode;
    saturate maps inf and overflow to the largest power of two, else they become nan (as nan does)."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    exponent = ((bits >> 23) & 0xFF).astype(np.uint16)
    fraction = bits & 0x7FFFFF
    if round_mode == "up":
        bump = fraction != 0
    elif round_mode == "nearest":   # the guard bit, with ties rounding up except below the normal range
        bump = ((fraction & 0x400000) != 0) & (((fraction & 0x3FFFFF) != 0) | (exponent > 0))
    else:
        bump = np.zeros(bits.shape, bool)
    if saturate:
        exponent = np.where((exponent == 0xFF) & (fraction == 0), 0xFE, exponent)
        bump &= exponent < 0xFE
    return np.minimum(exponent + bump, 0xFF).astype(np.uint8).view(E8M0)


def to_strings(x: np.ndarray) -> np.ndarray:
    """Decimal text of each element as onnxruntime writes it: '%.8g' floats, INF/-INF/NaN, bools 1/0."""
    if x.dtype == STRING:
        return x.copy()
    if x.dtype == np.bool_:
        values = ["1" if v else "0" for v in x.ravel().tolist()]
    elif x.dtype.kind == "c":
        values = [str(v) for v in x.ravel().tolist()]
    elif is_integer(x.dtype):
        values = [str(v) for v in (x if x.dtype.kind in "iu" else x.astype(np.int64)).ravel().tolist()]
    else:
        values = [_float_text(v) for v in x.astype(np.float64).ravel().tolist()]
    return np.array(values, dtype=object).reshape(x.shape)


def _float_text(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "INF" if v > 0 else "-INF"
    return "%.8g" % v


def parse_number(text: str | bytes, integer: bool) -> int | float:
    """The number a string spells: an int when `integer` and it is one, else a float (INF, NaN in any case)."""
    s = (text.decode() if isinstance(text, bytes) else str(text)).strip()
    if integer:
        try:
            return int(s)
        except ValueError:
            pass
    return float(s)


class CastOp(Op):
    """Shared by Cast and CastLike: convert input 0 to `target(node)`."""

    mapping = MappingType.ONE_TO_ONE
    elementwise = True

    def target(self, node: Node) -> np.dtype:
        raise NotImplementedError

    def infer(self, node: Node) -> list[Inferred]:
        round_mode = node.attr("round_mode", "up")
        if round_mode not in ROUND_MODES:
            raise self.invalid(node, f"round_mode must be one of {', '.join(ROUND_MODES)}, not {round_mode!r}")
        return [TensorType(self.target(node), node.inputs[0].shape)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x, target = inputs[0], self.target(node)
        if target == STRING:
            return [to_strings(x)]
        if x.dtype == STRING:
            x = self.parsed(node, x, is_integer(target))
        saturate = bool(node.attr("saturate", 1))
        if target == E8M0:
            return [to_e8m0(x, saturate, node.attr("round_mode", "up"))]
        if target in FLOAT8 and saturate:
            x = saturated(x, target)
        return [converted(x, target)]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        """numpy's astype between C types (the only ones with generated code): floats truncate toward zero
        into integers, anything nonzero (nan included) is true."""
        return cast(read(0, index), ctype(self.target(node)))

    def parsed(self, node: Node, x: np.ndarray, integer: bool) -> np.ndarray:
        """The numbers that the strings of x spell: int64 when all are integers and `integer`, else float64."""
        try:
            values = [parse_number(s, integer) for s in x.ravel().tolist()]
        except ValueError as e:
            raise self.invalid(node, f"cannot convert a string to a number: {e}") from e
        exact = integer and all(isinstance(v, int) for v in values)
        return np.array(values, dtype=np.int64 if exact else np.float64).reshape(x.shape)


@register
class Cast(CastOp):
    """y = x converted to the element type given by the `to` attribute."""

    op_type = "Cast"

    def target(self, node: Node) -> np.dtype:
        if node.attr("to") is None:
            raise self.invalid(node, "has no 'to' attribute")
        return dtypes.to_numpy(int(node.attr("to")))


@register
class CastLike(CastOp):
    """y = x converted to the element type of the second input."""

    op_type = "CastLike"

    def target(self, node: Node) -> np.dtype:
        return np.dtype(node.inputs[1].dtype)
