"""Decomposed operators recognised as one: an exporter's chain for an activation or a normalisation becomes the
single operator it spells, whose generated code computes it the cheap way (a normalisation in one pass over
each row for its statistics) and which fusion sees as one operator instead of several.

Exporters spell one operator several ways (ReduceMean's axes as an attribute or, from opset 18, an input; a
square as Pow(d, 2) or d * d; a division or a multiplication by a reciprocal, or tf2onnx's Keras LayerNorm
distributed as x * inv + (beta - mean * inv); the factors of GELU in any order), so a rule here may have
several patterns (`engine.Spellings`). A LayerNorm or RMSNorm is recognised without
its scale and shift, which the `norm-scale` and `norm-shift` rules then fold into the operator's own inputs,
so every combination of present and absent gamma and beta is covered. Constants are matched within a relative
TOLERANCE of their exact values (exporters round them to float32)."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import product
from typing import Callable

import numpy as np

from ...ir import dtypes
from ...ir.graph import Node, Value
from ...ops.normalization import GroupNormalization
from .engine import Builder, Rule, Spellings
from .pattern import Const, Match, Op, P, Pattern, Var, is_float, scalar

TOLERANCE = 1e-6            # relative distance allowed between an exporter's constant and the exact value
GELU_CUBIC = 0.044715       # the cubic coefficient of GELU's tanh approximation


def spellings(name: str, patterns: list[Op], build: Callable[[Builder, Match], Value],
              where: Callable[[Match], bool], summary: str, rtol: float = 1e-5, atol: float = 1e-6) -> Spellings:
    """A decomposed-operator rule (kept whenever it matches) over `patterns`."""
    return Spellings(name, "decomposed", patterns[0], build, where, always=True, rtol=rtol, atol=atol,
                     summary=summary, others=tuple(patterns[1:]))


# --- conditions -------------------------------------------------------------------------------------------
def near(number: float) -> Callable[[np.ndarray], bool]:
    """A one-element numeric constant within TOLERANCE (relative) of `number`."""
    return lambda a: a.size == 1 and a.dtype.kind in "fiu" and \
        bool(np.isclose(float(a.reshape(-1)[0]), number, rtol=TOLERANCE, atol=0))


def number(m: Match, name: str) -> float:
    """The value of the one-element constant bound to `name`."""
    return float(m.array(name).reshape(-1)[0])


def _same_float_type(m: Match) -> bool:
    """x is a float tensor with the root output's type and shape (the chain neither casts nor broadcasts)."""
    x, y = m["x"], m.root.outputs[0]
    return is_float(x) and x.dtype == y.dtype and x.shape is not None and tuple(x.shape) == tuple(y.shape or ())


def trailing_axes(node: Node) -> tuple[int, ...] | None:
    """The axes a ReduceMean (keeping them) or a GlobalAveragePool (axes 2 on) averages over when they are its
    input's trailing static axes (ReduceMean's axes an attribute before opset 18, a constant input since); None
    otherwise."""
    shape = node.inputs[0].shape
    if node.op_type == "GlobalAveragePool":
        return tuple(range(2, len(shape))) if shape is not None and len(shape) > 2 and \
            all(isinstance(d, int) for d in shape[2:]) else None
    axes_input = node.input(1)
    if shape is None or node.attr("keepdims", 1) != 1 or (axes_input is not None and axes_input.const is None):
        return None
    axes = node.attr("axes") if axes_input is None else axes_input.const.reshape(-1).tolist()
    if not axes:
        if node.attr("noop_with_empty_axes", 0):
            return None
        axes = range(len(shape))
    rank = len(shape)
    if any(not -rank <= a < rank for a in axes):
        return None
    axes = sorted({int(a) % rank for a in axes})
    if not axes or axes != list(range(rank - len(axes), rank)) or any(not isinstance(shape[a], int) for a in axes):
        return None
    return tuple(axes)


def _statistics_over_trailing_axes(m: Match, *reductions: str) -> bool:
    """The named ReduceMean nodes all reduce the same trailing axes of x."""
    axes = [trailing_axes(m.node(name)) for name in reductions]
    return axes[0] is not None and all(a == axes[0] for a in axes)


def _stash(x: Value) -> dict[str, int]:
    """stash_type for a normalisation of x: its own precision for float64 (the decomposition's), else float32."""
    return {"stash_type": dtypes.to_onnx(x.dtype)} if np.dtype(x.dtype) == np.float64 else {}


# --- shared pieces of patterns ---------------------------------------------------------------------------
X, D = Var("x"), Var("d")
ONE = Const("one", near(1.0))


def _mean(of: Pattern, name: str, axes_input: bool, types: str | tuple[str, ...] = "ReduceMean",
          shared: bool = False) -> Op:
    """A mean of `of` (ReduceMean or one of `types`), its axes an attribute (opset < 18) or a constant input."""
    inputs = (of, Const(f"{name}_axes")) if axes_input else (of,)
    return P(types, *inputs, name=name, shared=shared)


def _squares(of: Pattern, again: Pattern | None = None) -> list[Op]:
    """of ** 2 or of * of (the second factor `again` when `of` is a node pattern, which matches one node once)."""
    return [P("Pow", of, Const("two", near(2.0))), P("Mul", of, again or of)]


def _reciprocals(of: Op) -> list[Op]:
    """1 / of, as Reciprocal(of) or Div(1, of)."""
    return [P("Reciprocal", of), P("Div", ONE, of)]


def _denominators(of: Var) -> list[tuple[bool, Op]]:
    """Every spelling of sqrt(mean(of ** 2) + eps), with whether its ReduceMean axes are an input."""
    return [(axes_input, P("Sqrt", P("Add", _mean(square, "var", axes_input), Const("eps", scalar))))
            for axes_input, square in product((False, True), _squares(of))]


# --- LayerNorm ------------------------------------------------------------------------------------------------
def _centered(axes_input: bool) -> Op:
    """x - mean(x), read by the square and by the division (so shared)."""
    return P("Sub", X, _mean(X, "mean", axes_input), name="centered", shared=True)


def _layer_norm_patterns(divided: bool) -> list[Op]:
    """(x - mean) / sqrt(var + eps) when `divided`, else (x - mean) * 1 / sqrt(var + eps)."""
    patterns = []
    for axes_input, std in _denominators(D):
        centered = _centered(axes_input)
        patterns += [P("Div", centered, std)] if divided else [P("Mul", centered, r) for r in _reciprocals(std)]
    return patterns


def _is_layer_norm(m: Match) -> bool:
    return _same_float_type(m) and m["d"] is m.node("centered").outputs[0] and \
        _statistics_over_trailing_axes(m, "mean", "var")


def _layer_norm(b: Builder, m: Match) -> Value:
    x, axes = m["x"], trailing_axes(m.node("mean"))
    scale = b.const(np.ones(x.shape[axes[0]:]), x.dtype)
    return b.op("LayerNormalization", x, scale, axis=-len(axes), epsilon=number(m, "eps"), **_stash(x))


# --- LayerNorm as tf2onnx writes Keras's: x * inv + (beta - mean * inv), inv = gamma / sqrt(var + eps) ----------
MEANS = ("GlobalAveragePool", "ReduceMean")


def _keras_layer_norm_patterns() -> list[Op]:
    """x * inv + (-mean) * inv or x * inv + (beta - mean * inv), where inv = 1 / sqrt(mean((x - mean)^2) + eps),
    times gamma or not; each mean a GlobalAveragePool or a ReduceMean (axes an attribute or an input)."""
    patterns = []
    for axes_input, with_gamma, with_beta in product((False, True), repeat=3):
        mean = _mean(X, "mean", axes_input, MEANS, shared=True)
        for square in _squares(P("Sub", X, Var("mu"), name="centered", shared=True), D):
            rsqrt = P("Reciprocal", P("Sqrt", P("Add", _mean(square, "var", axes_input, MEANS), Const("eps", scalar))))
            inv = P("Mul", rsqrt, Const("gamma"), name="inv", shared=True) if with_gamma else \
                replace(rsqrt, name="inv", shared=True)
            shift = P("Sub", Const("beta"), P("Mul", mean, inv)) if with_beta else P("Mul", P("Neg", mean), inv)
            patterns.append(P("Add", P("Mul", X, Var("scale")), shift))
    return patterns


def _is_keras_layer_norm(m: Match) -> bool:
    axes = trailing_axes(m.node("mean"))
    square_of_centered = "d" not in m.values or m["d"] is m.node("centered").outputs[0]
    return _same_float_type(m) and square_of_centered and m["mu"] is m.node("mean").outputs[0] and \
        m["scale"] is m.node("inv").outputs[0] and _statistics_over_trailing_axes(m, "mean", "var") and \
        all(as_normalised(m.array(p), axes[0], m["x"].shape) is not None for p in ("gamma", "beta") if p in m.values)


def _keras_layer_norm(b: Builder, m: Match) -> Value:
    x, axes = m["x"], trailing_axes(m.node("mean"))
    scale, bias = (as_normalised(m.array(p), axes[0], x.shape) if p in m.values else None for p in ("gamma", "beta"))
    inputs = [b.const(np.ones(x.shape[axes[0]:]) if scale is None else scale, x.dtype)]
    inputs += [b.const(bias, x.dtype)] if bias is not None else []
    return b.op("LayerNormalization", x, *inputs, axis=-len(axes), epsilon=number(m, "eps"), **_stash(x))


# --- RMSNorm ----------------------------------------------------------------------------------------------------
def _rms_norm_patterns(divided: bool) -> list[Op]:
    """x / sqrt(mean(x ** 2) + eps) when `divided`, else x * 1 / sqrt(mean(x ** 2) + eps)."""
    patterns = []
    for _, rms in _denominators(X):
        patterns += [P("Div", X, rms)] if divided else [P("Mul", X, r) for r in _reciprocals(rms)]
    return patterns


def _is_rms_norm(m: Match) -> bool:
    return _same_float_type(m) and _statistics_over_trailing_axes(m, "var")


def _rms_norm(b: Builder, m: Match) -> Value:
    x, axes = m["x"], trailing_axes(m.node("var"))
    scale = b.const(np.ones(x.shape[axes[0]:]), x.dtype)
    return b.op("RMSNormalization", x, scale, axis=-len(axes), epsilon=number(m, "eps"), **_stash(x))


# --- a constant scale or shift after a normalisation, folded into its inputs ---------------------------------
NORMS = ("LayerNormalization", "RMSNormalization")


def _normalised(m: Match) -> tuple[int, tuple[int, ...]]:
    """The normalisation's first normalised axis and its input's shape."""
    node = m.node("norm")
    shape = tuple(node.inputs[0].shape)
    return int(node.attr("axis", -1)) % len(shape), shape


def _per_normalised_element(m: Match, name: str) -> np.ndarray | None:
    """The constant `name` as an array of the normalisation's normalised shape (see `as_normalised`)."""
    return as_normalised(m.array(name), *_normalised(m))


def as_normalised(c: np.ndarray, axis: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """`c` as an array of shape[axis:], when it broadcasts against `shape` along those axes only; else None."""
    kept = max(0, c.ndim - (len(shape) - axis))
    if c.ndim > len(shape) or any(d != 1 for d in c.shape[:kept]):
        return None
    try:
        return np.broadcast_to(c.reshape(c.shape[kept:]), shape[axis:])
    except ValueError:
        return None


def _affine_patterns(root: str, norms: tuple[str, ...] | str) -> list[Op]:
    """root(norm(x, scale[, bias]), c) for a normalisation with a constant scale and bias (or none)."""
    norm = [P(norms, X, Const("scale"), name="norm"), P(norms, X, Const("scale"), Const("bias"), name="norm")]
    return [P(root, n, Const("c")) for n in norm]


def _folds_into_norm(m: Match) -> bool:
    node, out = m.node("norm"), m.root.outputs[0]
    return node.outputs[0].shape is not None and out.dtype == node.outputs[0].dtype and \
        tuple(out.shape or ()) == tuple(node.outputs[0].shape) and _per_normalised_element(m, "c") is not None


def _rebuilt_norm(b: Builder, m: Match, scale: np.ndarray, bias: np.ndarray | None) -> Value:
    node = m.node("norm")
    dtype = node.outputs[0].dtype
    inputs = [m["x"], b.const(scale, dtype)] + ([b.const(bias, dtype)] if bias is not None else [])
    return b.op(node.op_type, *inputs, **node.attrs)


def _own_params(m: Match) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The normalisation's scale and bias (None when it has none) per normalised element."""
    bias = _per_normalised_element(m, "bias") if "bias" in m.values else None
    return _per_normalised_element(m, "scale"), bias


def _scaled_norm(b: Builder, m: Match) -> Value:
    (scale, bias), gamma = _own_params(m), _per_normalised_element(m, "c")
    return _rebuilt_norm(b, m, scale * gamma, None if bias is None else bias * gamma)


def _shifted_norm(b: Builder, m: Match) -> Value:
    (scale, bias), beta = _own_params(m), _per_normalised_element(m, "c")
    return _rebuilt_norm(b, m, scale, beta if bias is None else bias + beta)


def _own_params_fold(m: Match) -> bool:
    scale, bias = _own_params(m)
    return _folds_into_norm(m) and scale is not None and ("bias" not in m.values or bias is not None)


# --- GELU -------------------------------------------------------------------------------------------------
def _half_x_times(part: Op) -> list[Op]:
    """0.5 * x * part, in the orders exporters multiply them."""
    half = Const("half", near(0.5))
    return [P("Mul", P("Mul", X, half), part), P("Mul", P("Mul", X, part), half), P("Mul", X, P("Mul", part, half))]


def _erf_gelu_patterns() -> list[Op]:
    """0.5 * x * (1 + erf(x / sqrt 2)), x / sqrt 2 also as x * (1 / sqrt 2)."""
    scaled = [P("Div", X, Const("root2", near(math.sqrt(2)))), P("Mul", X, Const("root2", near(math.sqrt(0.5))))]
    return [p for s in scaled for p in _half_x_times(P("Add", P("Erf", s), ONE))]


def _tanh_gelu_patterns() -> list[Op]:
    """0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3))), x ** 3 also as x * x * x."""
    cubes = [P("Pow", X, Const("three", near(3.0))), P("Mul", P("Mul", X, X), X)]
    patterns = []
    for cube in cubes:
        inner = P("Add", X, P("Mul", cube, Const("cubic", near(GELU_CUBIC))))
        tanh = P("Tanh", P("Mul", inner, Const("scale", near(math.sqrt(2 / math.pi)))))
        patterns += _half_x_times(P("Add", tanh, ONE))
    return patterns


def _gelu(approximate: str) -> Callable[[Builder, Match], Value]:
    return lambda b, m: b.op("Gelu", m["x"], approximate=approximate)


# --- Swish, HardSwish, Mish ------------------------------------------------------------------------------------
def _swish(b: Builder, m: Match) -> Value:
    alpha = number(m, "alpha") if "alpha" in m.values else 1.0
    return b.op("Swish", m["x"], **({"alpha": alpha} if alpha != 1.0 else {}))


def _clips() -> list[Op]:
    """clip(x + 3, 0, 6): bounds as inputs (opset 11 on) or attributes (before)."""
    shifted = P("Add", X, Const("three", near(3.0)))
    return [P("Clip", shifted, Const("low", near(0.0)), Const("high", near(6.0))),
            P("Clip", shifted, attrs=lambda n: n.attr("min") == 0.0 and n.attr("max") == 6.0)]


def _hard_swish_patterns(divided: bool) -> list[Op]:
    """x * clip(x + 3, 0, 6) / 6 (a Div root when `divided`; else by 1/6, in any order) and, not `divided`,
    x * HardSigmoid(x) with alpha 1/6 and beta 1/2."""
    six, sixth = Const("six", near(6.0)), Const("sixth", near(1 / 6))
    if divided:
        return [P("Div", P("Mul", X, clip), six) for clip in _clips()]
    sigmoid = P("HardSigmoid", X, attrs=lambda n: math.isclose(n.attr("alpha", 0.2), 1 / 6, rel_tol=TOLERANCE) and
                math.isclose(n.attr("beta", 0.5), 0.5, rel_tol=TOLERANCE))
    return [P("Mul", X, sigmoid)] + [p for clip in _clips() for p in (
        P("Mul", X, P("Div", clip, six)), P("Mul", P("Mul", X, clip), sixth), P("Mul", X, P("Mul", clip, sixth)))]


def _unary(op_type: str) -> Callable[[Builder, Match], Value]:
    return lambda b, m: b.op(op_type, m["x"])


# --- GroupNorm ---------------------------------------------------------------------------------------------
def _group_norm_pattern() -> Op:
    """reshape(InstanceNormalization(reshape(x, (N, groups, -1)), scale, bias), shape of x) (torch's export)."""
    grouped = P("Reshape", X, Const("grouped"), name="grouped")
    return P("Reshape", P("InstanceNormalization", grouped, Const("scale"), Const("bias"), name="norm"),
             Const("shape"))


def _groups(m: Match) -> int | None:
    """The number of groups when x (N, C, ...) was viewed as (N, groups, the rest) with groups dividing C."""
    shape, view = m["x"].shape, m.node("grouped").outputs[0].shape
    if shape is None or view is None or len(shape) < 2 or len(view) != 3 or view[0] != shape[0]:
        return None
    groups = view[1]
    return groups if isinstance(groups, int) and groups > 0 and shape[1] % groups == 0 else None


def _is_group_norm(m: Match) -> bool:
    return _same_float_type(m) and _groups(m) is not None and all(
        m.array(p).shape == (_groups(m),) for p in ("scale", "bias"))


def _group_norm(b: Builder, m: Match) -> Value:
    x, groups, norm = m["x"], _groups(m), m.node("norm")
    per = x.shape[1] // groups if m.root.opset >= GroupNormalization.per_channel_since else 1
    scale, bias = (b.const(np.repeat(m.array(p), per), x.dtype) for p in ("scale", "bias"))
    return b.op("GroupNormalization", x, scale, bias, num_groups=groups, epsilon=float(norm.attr("epsilon", 1e-5)),
                **_stash(x))


RULES = [
    Rule("mish", "decomposed", P("Mul", X, P("Tanh", P("Softplus", X))), _unary("Mish"), _same_float_type,
         always=True, rtol=1e-5, atol=1e-6,
         summary="x * tanh(softplus(x)) -> Mish(x): one exp and one division instead of an exp, a log1p and a tanh"),
    spellings("layernorm", _layer_norm_patterns(divided=True), _layer_norm, _is_layer_norm,
              "(x - mean(x)) / sqrt(mean((x - mean)^2) + eps) over trailing axes -> LayerNormalization (torch)"),
    spellings("layernorm-reciprocal", _layer_norm_patterns(divided=False), _layer_norm, _is_layer_norm,
              "(x - mean) * reciprocal(sqrt(var + eps)) or * Div(1, sqrt) -> LayerNormalization (rsqrt forms)"),
    spellings("layernorm-keras", _keras_layer_norm_patterns(), _keras_layer_norm, _is_keras_layer_norm,
              "x * inv + (beta - mean * inv) with inv = gamma / sqrt(var + eps) -> LayerNormalization (tf2onnx)"),
    spellings("rmsnorm", _rms_norm_patterns(divided=False), _rms_norm, _is_rms_norm,
              "x * reciprocal(sqrt(mean(x^2) + eps)) over trailing axes -> RMSNormalization (torch's rsqrt)"),
    spellings("rmsnorm-div", _rms_norm_patterns(divided=True), _rms_norm, _is_rms_norm,
              "x / sqrt(mean(x^2) + eps) over trailing axes -> RMSNormalization"),
    spellings("norm-scale", _affine_patterns("Mul", NORMS), _scaled_norm, _own_params_fold,
              "a constant per-element scale after Layer/RMSNormalization folded into its scale (and bias)"),
    spellings("norm-shift", _affine_patterns("Add", "LayerNormalization"), _shifted_norm, _own_params_fold,
              "a constant per-element shift after LayerNormalization folded into its bias"),
    spellings("gelu", _erf_gelu_patterns(), _gelu("none"), _same_float_type,
              "0.5 * x * (1 + erf(x / sqrt 2)) in any factor order -> Gelu"),
    spellings("gelu-tanh", _tanh_gelu_patterns(), _gelu("tanh"), _same_float_type,
              "0.5 * x * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) -> Gelu(approximate='tanh')"),
    spellings("swish", [P("Mul", X, P("Sigmoid", X)), P("Mul", X, P("Sigmoid", P("Mul", X, Const("alpha", scalar))))],
              _swish, _same_float_type, "x * sigmoid(alpha x) -> Swish (SiLU for alpha = 1)"),
    spellings("hardswish", _hard_swish_patterns(divided=False), _unary("HardSwish"), _same_float_type,
              "x * HardSigmoid(x; 1/6, 1/2) or x * clip(x + 3, 0, 6) * (1/6) -> HardSwish"),
    spellings("hardswish-div", _hard_swish_patterns(divided=True), _unary("HardSwish"), _same_float_type,
              "x * clip(x + 3, 0, 6) / 6 -> HardSwish"),
    spellings("groupnorm", [_group_norm_pattern()], _group_norm, _is_group_norm,
              "reshape -> InstanceNormalization -> reshape back (torch's GroupNorm) -> GroupNormalization"),
]
