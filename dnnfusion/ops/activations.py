"""Activation functions: Relu, Sigmoid, Tanh, the parameterised ReLU/ELU family, HardSigmoid, HardSwish, Gelu,
Mish, Softplus, Softsign, Swish, Shrink, PRelu, Clip and Dropout (inference) — all One-to-One."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from onnx import NodeProto, helper, numpy_helper

from ..kir.expr import Expr, Index, binary, call, cast, ctype, lit, select
from ..kir.kernel import Reader
from ..ir.graph import Node
from .arithmetic import maximum, wrapping
from .base import Binary, Inferred, MappingType, Op, TensorType, Unary, same_as_input
from .registry import register
from .unary_math import FloatUnary, erf, magnitude, real

MISH_OPSET = 18         # the first default-domain opsets with Mish, HardSwish, Gelu and Swish
HARD_SWISH_OPSET = 14
GELU_OPSET = 20
SWISH_OPSET = 24


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x), without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softplus(x: np.ndarray) -> np.ndarray:
    """ln(1 + e^x), without overflow for large x."""
    return np.logaddexp(np.zeros((), x.dtype), x)


def below(node: Node, since: int) -> bool:
    """Whether the node's graph imports an ONNX opset older than `since`, the first with its operator: the node
    was recognised in its decomposition (passes/rewrite/decomposed.py) and `onnx_body` spells it out again."""
    return 0 < node.opset < since


def onnx_node(op_type: str, inputs: Sequence[str], output: str, **attrs: object) -> NodeProto:
    """A one-output NodeProto (for `onnx_body`)."""
    return helper.make_node(op_type, list(inputs), [output], **attrs)


def onnx_constant(name: str, value: float | np.ndarray, dtype: np.dtype) -> NodeProto:
    """A Constant NodeProto holding `value` as `dtype` (for `onnx_body`)."""
    return onnx_node("Constant", [], name, value=numpy_helper.from_array(np.asarray(value, dtype), name))


def gated(node: Node, gate: list[NodeProto], gate_name: str) -> list[NodeProto]:
    """`gate` (computing `gate_name` from the node's input), then output = input * gate."""
    return gate + [onnx_node("Mul", [node.inputs[0].name, gate_name], node.outputs[0].name)]


def _alpha(node: Node, default: float) -> float:
    return float(node.attr("alpha", default))


def clamp(x: Expr, low: float, high: float) -> Expr:
    """np.clip(x, low, high) for constant bounds low <= high: nan stays nan."""
    low_, high_ = lit(low, x.ctype), lit(high, x.ctype)
    return select(binary("<", x, low_), low_, select(binary(">", x, high_), high_, x))


def sigmoid_expr(x: Expr) -> Expr:
    """1 / (1 + e^-x), one helper call (its exponent scale is simpler than a general exp's)."""
    return call("sigmoid", x)


def softplus_expr(x: Expr) -> Expr:
    """ln(1 + e^x) as max(x, 0) + ln(1 + e^-|x|), which neither overflows nor loses small values."""
    return maximum(x, lit(0, x.ctype)) + call("log1p", call("exp", -magnitude(x)))


@register
class Relu(FloatUnary):
    """y = max(x, 0)."""

    op_type = "Relu"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, np.zeros((), x.dtype))

    def expr(self, node: Node, x: Expr) -> Expr:
        return maximum(x, lit(0, x.ctype))


@register
class Sigmoid(FloatUnary):
    """y = 1 / (1 + e^-x)."""

    op_type = "Sigmoid"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return sigmoid(x)

    def expr(self, node: Node, x: Expr) -> Expr:
        return sigmoid_expr(real(x))


@register
class Tanh(FloatUnary):
    """y = tanh(x)."""

    op_type = "Tanh"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def expr(self, node: Node, x: Expr) -> Expr:
        return call("tanh", real(x))


@register
class LeakyRelu(FloatUnary):
    """y = x for x >= 0, alpha * x otherwise (alpha = 0.01)."""

    op_type = "LeakyRelu"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x, _alpha(node, 0.01) * x)

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        return select(binary(">=", x, lit(0, x.ctype)), x, lit(_alpha(node, 0.01), x.ctype) * x)


@register
class Elu(FloatUnary):
    """y = x for x >= 0, alpha * (e^x - 1) otherwise (alpha = 1)."""

    op_type = "Elu"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x, _alpha(node, 1.0) * np.expm1(x))

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        return select(binary(">=", x, lit(0, x.ctype)), x, lit(_alpha(node, 1.0), x.ctype) * call("expm1", x))


@register
class Selu(FloatUnary):
    """y = gamma * x for x > 0, gamma * alpha * (e^x - 1) otherwise (the self-normalising constants)."""

    op_type = "Selu"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        alpha, gamma = self.constants(node)
        return gamma * np.where(x > 0, x, alpha * np.expm1(x))

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        alpha, gamma = (lit(c, x.ctype) for c in self.constants(node))
        return gamma * select(binary(">", x, lit(0, x.ctype)), x, alpha * call("expm1", x))

    @staticmethod
    def constants(node: Node) -> tuple[float, float]:
        """(alpha, gamma)."""
        return _alpha(node, 1.67326319217681884765625), float(node.attr("gamma", 1.05070102214813232421875))


@register
class Celu(FloatUnary):
    """y = max(0, x) + min(0, alpha * (e^(x / alpha) - 1)) (alpha = 1)."""

    op_type = "Celu"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        alpha = _alpha(node, 1.0)
        return np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(x / alpha))

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        alpha, zero = lit(_alpha(node, 1.0), x.ctype), lit(0, x.ctype)
        return maximum(x, zero) + maximum(alpha * call("expm1", x / alpha), zero, "<=")


@register
class ThresholdedRelu(FloatUnary):
    """y = x for x > alpha, 0 otherwise (alpha = 1)."""

    op_type = "ThresholdedRelu"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.where(x > _alpha(node, 1.0), x, 0)

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        return select(binary(">", x, lit(_alpha(node, 1.0), x.ctype)), x, lit(0, x.ctype))


@register
class HardSigmoid(FloatUnary):
    """y = max(0, min(1, alpha * x + beta)) (alpha = 0.2, beta = 0.5)."""

    op_type = "HardSigmoid"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.clip(_alpha(node, 0.2) * x + float(node.attr("beta", 0.5)), 0, 1)

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        y = lit(_alpha(node, 0.2), x.ctype) * x + lit(float(node.attr("beta", 0.5)), x.ctype)
        return clamp(y, 0, 1)


@register
class HardSwish(FloatUnary):
    """y = x * max(0, min(1, x / 6 + 1 / 2))."""

    op_type = "HardSwish"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x * np.clip(x / 6 + 0.5, 0, 1)

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        return x * clamp(x / lit(6, x.ctype) + lit(0.5, x.ctype), 0, 1)

    def onnx_body(self, node: Node) -> list | None:
        """Below opset 14: x * HardSigmoid(x; alpha = 1/6, beta = 1/2)."""
        if not below(node, HARD_SWISH_OPSET):
            return None
        return gated(node, [onnx_node("HardSigmoid", [node.inputs[0].name], "hardswish_gate", alpha=1 / 6,
                                      beta=0.5)], "hardswish_gate")


@register
class Gelu(FloatUnary):
    """y = x * Phi(x), the Gaussian CDF; approximate='tanh' uses the tanh formula."""

    op_type = "Gelu"

    def infer(self, node: Node) -> list[Inferred]:
        if node.attr("approximate", "none") not in ("none", "tanh"):
            raise self.invalid(node, f"approximate must be 'none' or 'tanh', not {node.attr('approximate')!r}")
        return super().infer(node)

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        if node.attr("approximate", "none") == "tanh":
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        half, one = lit(0.5, x.ctype), lit(1, x.ctype)
        if node.attr("approximate", "none") == "tanh":
            inner = lit(math.sqrt(2 / math.pi), x.ctype) * (x + lit(0.044715, x.ctype) * (x * x * x))
            return half * x * (one + call("tanh", inner))
        return half * x * (one + call("erf", x / lit(math.sqrt(2), x.ctype)))

    def onnx_body(self, node: Node) -> list | None:
        """Below opset 20: 0.5 * x * (1 + erf(x / sqrt 2)), or with tanh(sqrt(2/pi) (x + 0.044715 x^3))."""
        if not below(node, GELU_OPSET):
            return None
        x, dtype = node.inputs[0].name, node.inputs[0].dtype
        if node.attr("approximate", "none") == "tanh":
            nodes = [onnx_constant("gelu_cubic", 0.044715, dtype),
                     onnx_constant("gelu_scale", math.sqrt(2 / math.pi), dtype),
                     onnx_node("Mul", [x, x], "gelu_x2"), onnx_node("Mul", ["gelu_x2", x], "gelu_x3"),
                     onnx_node("Mul", ["gelu_x3", "gelu_cubic"], "gelu_term"),
                     onnx_node("Add", [x, "gelu_term"], "gelu_sum"),
                     onnx_node("Mul", ["gelu_sum", "gelu_scale"], "gelu_arg"),
                     onnx_node("Tanh", ["gelu_arg"], "gelu_f")]
        else:
            nodes = [onnx_constant("gelu_root2", math.sqrt(2), dtype),
                     onnx_node("Div", [x, "gelu_root2"], "gelu_arg"), onnx_node("Erf", ["gelu_arg"], "gelu_f")]
        nodes += [onnx_constant("gelu_half", 0.5, dtype), onnx_constant("gelu_one", 1.0, dtype),
                  onnx_node("Add", ["gelu_f", "gelu_one"], "gelu_sum1"),
                  onnx_node("Mul", ["gelu_sum1", "gelu_half"], "gelu_gate")]
        return gated(node, nodes, "gelu_gate")


@register
class Mish(FloatUnary):
    """y = x * tanh(softplus(x))."""

    op_type = "Mish"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x * np.tanh(softplus(x))

    def expr(self, node: Node, x: Expr) -> Expr:
        """tanh(softplus x) = n / (n + 2) with n = e^x (e^x + 2): one exp and one division, no log or tanh, in
        the input's type: within 6 ulp of the float64 value on normal results (tests/kir/test_mathlib.py; 3 at
        the 99.9th percentile over [-30, 30]), where taking the quotient in double (2 ulp) made YOLOv4's Mish
        convolutions 6-20% slower. e^x is taken at min(x, 20), where the quotient is already exactly 1."""
        x = real(x)
        e = call("exp", maximum(x, lit(20, x.ctype), "<="))
        n = e * (e + lit(2, x.ctype))
        return x * (n / (n + lit(2, x.ctype)))

    def onnx_body(self, node: Node) -> list | None:
        """Below opset 18, where ONNX has no Mish (the node was recognised in its decomposition,
        passes/rewrite/decomposed.py): that decomposition, Softplus, Tanh and Mul."""
        if not below(node, MISH_OPSET):
            return None
        return gated(node, [onnx_node("Softplus", [node.inputs[0].name], "mish_softplus"),
                            onnx_node("Tanh", ["mish_softplus"], "mish_tanh")], "mish_tanh")


@register
class Softplus(FloatUnary):
    """y = ln(1 + e^x)."""

    op_type = "Softplus"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return softplus(x)

    def expr(self, node: Node, x: Expr) -> Expr:
        return softplus_expr(real(x))


@register
class Softsign(FloatUnary):
    """y = x / (1 + |x|)."""

    op_type = "Softsign"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x / (1 + np.abs(x))

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        return x / (lit(1, x.ctype) + call("abs", x))


@register
class Swish(FloatUnary):
    """y = x * sigmoid(alpha * x) (alpha = 1; SiLU)."""

    op_type = "Swish"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x * sigmoid(_alpha(node, 1.0) * x)

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        return x * sigmoid_expr(lit(_alpha(node, 1.0), x.ctype) * x)

    def onnx_body(self, node: Node) -> list | None:
        """Below opset 24: x * Sigmoid(alpha * x)."""
        if not below(node, SWISH_OPSET):
            return None
        x, alpha = node.inputs[0].name, _alpha(node, 1.0)
        scaled = [onnx_constant("swish_alpha", alpha, node.inputs[0].dtype),
                  onnx_node("Mul", [x, "swish_alpha"], "swish_ax")] if alpha != 1.0 else []
        return gated(node, scaled + [onnx_node("Sigmoid", ["swish_ax" if scaled else x], "swish_gate")], "swish_gate")


@register
class Shrink(FloatUnary):
    """y = x - bias for x > lambd, x + bias for x < -lambd, 0 otherwise (lambd = 0.5, bias = 0)."""

    op_type = "Shrink"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        lambd, bias = float(node.attr("lambd", 0.5)), float(node.attr("bias", 0.0))
        return np.where(x > lambd, x - bias, np.where(x < -lambd, x + bias, 0))

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        lambd, bias = lit(float(node.attr("lambd", 0.5)), x.ctype), lit(float(node.attr("bias", 0.0)), x.ctype)
        return select(binary(">", x, lambd), x - bias, select(binary("<", x, -lambd), x + bias, lit(0, x.ctype)))


@register
class PRelu(Binary):
    """y = x for x >= 0, slope * x otherwise; slope broadcasts to x's shape."""

    op_type = "PRelu"

    def infer(self, node: Node) -> list[Inferred]:
        (out,) = super().infer(node)
        if out.shape != node.inputs[0].shape:
            raise self.invalid(node, f"slope of shape {node.inputs[1].shape} does not broadcast to the input's "
                                     f"shape {node.inputs[0].shape}")
        return [out]

    def fn(self, node: Node, x: np.ndarray, slope: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x, slope * x)

    def expr(self, node: Node, x: Expr, slope: Expr) -> Expr:
        return select(binary(">=", x, lit(0, x.ctype)), x, wrapping("*", slope, x))


@register
class Clip(Unary):
    """y = min(max(x, min), max); the bounds are attributes before opset 11 and optional inputs since."""

    op_type = "Clip"

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        low, high = self.bounds(node, inputs)
        y = x if low is None else np.maximum(x, low.astype(x.dtype))
        return [y if high is None else np.minimum(y, high.astype(x.dtype))]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        x = read(0, index)
        low, high = self.bound_exprs(node, x.ctype, read)
        y = x if low is None else maximum(x, low)
        return y if high is None else maximum(y, high, "<=")

    def lowering(self, node: Node) -> str | None:
        return Op.lowering(self, node)

    def bound_exprs(self, node: Node, ctype_: str, read: Reader) -> tuple[Expr | None, Expr | None]:
        """The (min, max) bounds as expressions of type `ctype_` (attributes, constant or runtime inputs)."""
        if node.opset < 11:
            return tuple(None if node.attr(k) is None else lit(node.attr(k), ctype_) for k in ("min", "max"))
        bounds = []
        for i in (1, 2):
            v = node.input(i)
            bounds.append(None if v is None else cast(read(i, tuple(lit(0, "int64_t") for _ in v.shape)), ctype_))
        return bounds[0], bounds[1]

    def bounds(self, node: Node, inputs: Sequence[np.ndarray | None]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The (min, max) bounds, each None when absent."""
        if node.opset < 11:
            low, high = node.attr("min"), node.attr("max")
            return (None if low is None else np.asarray(low), None if high is None else np.asarray(high))
        bounds = [inputs[i] if i < len(inputs) else None for i in (1, 2)]
        for name, bound in zip(("min", "max"), bounds):
            if bound is not None and bound.size != 1:
                raise self.invalid(node, f"{name} must be a scalar, not a tensor of shape {bound.shape}")
        return bounds[0], bounds[1]


@register
class Dropout(Op):
    """Inference dropout: y = x, and the optional mask is all true; random training mode is not supported."""

    op_type = "Dropout"
    mapping = MappingType.ONE_TO_ONE

    def infer(self, node: Node) -> list[Inferred]:
        ratio, training = node.input(1), node.input(2)
        if training is not None and training.const is not None and (ratio is None or ratio.const is not None):
            self.check_inference(node, ratio.const if ratio is not None else None, training.const)
        x = node.inputs[0]
        return [same_as_input(node), TensorType(self.mask_dtype(node, x.dtype), x.shape)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        if len(inputs) > 2 and inputs[2] is not None:
            self.check_inference(node, inputs[1], inputs[2])
        return [x, np.ones(x.shape, self.mask_dtype(node, x.dtype))]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        return read(0, index) if out == 0 else lit(1, ctype(node.outputs[1].dtype))

    def lowering(self, node: Node) -> str | None:
        return None if self.checked_at_run_time(node) else super().lowering(node)

    @staticmethod
    def checked_at_run_time(node: Node) -> bool:
        """Whether inference mode is known only at run time (a runtime training flag, or a true one with a
        runtime ratio): `compute` must check it, so the node runs as a fallback."""
        ratio, training = node.input(1), node.input(2)
        if training is None:
            return False
        return training.const is None or bool(training.const) and ratio is not None and ratio.const is None

    @staticmethod
    def mask_dtype(node: Node, x_dtype: np.dtype) -> np.dtype:
        """The mask is bool since opset 10 and of the input's type before."""
        return np.dtype(np.bool_) if node.opset >= 10 else np.dtype(x_dtype)

    def check_inference(self, node: Node, ratio: np.ndarray | None, training: np.ndarray) -> None:
        """Fail for training mode with a nonzero ratio (0.5 when omitted), which drops random elements."""
        drop = 0.5 if ratio is None else float(ratio)
        if bool(training) and drop != 0:
            raise self.fail(node, f"in training mode with ratio {drop} (random dropout) is not supported")

    def flops(self, node: Node) -> int:
        return 0
