"""Cases for passes/rewrite/decomposed.py: each exporter's spelling of an operator (one case per variant), and
negatives where the chain is not that operator (other axes, other constants, another tensor, an intermediate
read elsewhere)."""

from __future__ import annotations

import math

import numpy as np
from onnx import helper

from tests.helpers import FLOAT
from tests.passes.rewrite import harness
from tests.passes.rewrite.harness import Case

SHAPE = [2, 3, 16]
X = [("x", FLOAT, SHAPE)]
Z = [("z", FLOAT, SHAPE)]
RNG = np.random.default_rng(7)
NO_OVERFLOW = ("zero", "negative", "small", "special")   # the decomposition overflows where the operator does not


def model(nodes, inputs, outputs, initializers=None, opset: int = 17):
    """harness.model with only the initializers the nodes read (so onnxruntime does not warn of the others)."""
    read = {name for n in nodes for name in n.input}
    return harness.model(nodes, inputs, outputs, {k: v for k, v in (initializers or {}).items() if k in read}, opset)


def node(op: str, inputs: list[str], output: str, **attrs) -> helper.NodeProto:
    return helper.make_node(op, inputs, [output], **attrs)


def scalar(value: float) -> np.ndarray:
    return np.array(value, np.float32)


def weights(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# --- Mish ----------------------------------------------------------------------------------------------------
def mish(x: str = "x", leak: bool = False):
    nodes = [node("Softplus", ["x"], "s"), node("Tanh", ["s"], "t"), node("Mul", [x, "t"], "y")]
    return model(nodes, X + (Z if x == "z" else []), ["y"] + (["t"] if leak else []))


# --- LayerNorm and RMSNorm ---------------------------------------------------------------------------------
def mean(of: str, out: str, axes: list[int], opset: int) -> tuple[list[helper.NodeProto], dict[str, np.ndarray]]:
    """ReduceMean with axes as an attribute (opset < 18) or as an input (an initializer out + '_axes')."""
    if opset < 18:
        return [node("ReduceMean", [of], out, axes=axes)], {}
    return [node("ReduceMean", [of, out + "_axes"], out)], {out + "_axes": np.array(axes, np.int64)}


def layer_norm(opset: int = 13, square: str = "Pow", inverse: str = "Div", axes=(-1,), var_axes=None,
               x: str = "x", leak: str | None = None, exponent: float = 2.0, eps=1e-5, affine: bool = True):
    """ReduceMean -> Sub -> square -> ReduceMean -> Add eps -> Sqrt -> normalise (Div, Reciprocal+Mul or
    Div(1, .)+Mul) -> Mul gamma -> Add beta, as exporters write LayerNorm."""
    axes, var_axes = list(axes), list(var_axes or axes)
    nodes, inits = mean("x", "mu", axes, opset)
    nodes += [node("Sub", [x, "mu"], "d")]
    nodes += [node("Pow", ["d", "two"], "sq")] if square == "Pow" else [node("Mul", ["d", "d"], "sq")]
    variance, var_inits = mean("sq", "var", var_axes, opset)
    nodes += variance + [node("Add", ["var", "eps"], "ve"), node("Sqrt", ["ve"], "sd")] + normalise("d", inverse)
    out = "n"
    if affine:
        nodes += [node("Mul", ["n", "gamma"], "g"), node("Add", ["g", "beta"], "y")]
        out = "y"
    normalised = SHAPE[min(a % 3 for a in axes):]
    inits.update(var_inits, two=scalar(exponent), eps=np.array(eps, np.float32), one=scalar(1.0),
                 gamma=weights(*normalised), beta=weights(*normalised))
    return model(nodes, X + (Z if x == "z" else []), [out] + ([leak] if leak else []), inits, opset)


def normalise(numerator: str, inverse: str) -> list[helper.NodeProto]:
    """numerator over sd: Div, Reciprocal then Mul, or Div(1, sd) then Mul (operands swapped)."""
    return {"Div": [node("Div", [numerator, "sd"], "n")],
            "Reciprocal": [node("Reciprocal", ["sd"], "r"), node("Mul", [numerator, "r"], "n")],
            "Div1": [node("Div", ["one", "sd"], "r"), node("Mul", ["r", numerator], "n")]}[inverse]


def keras_layer_norm(opset: int = 17, mean_op: str = "GlobalAveragePool", square: str = "Mul", gamma=(1, 1, 16),
                     beta: bool = False, axes=(-1,), x: str = "x", leak: str | None = None):
    """tf2onnx's Keras LayerNorm: inv = gamma / sqrt(mean((x - mean)^2) + eps), y = x * inv + (-mean) * inv, or
    with a shift, x * inv + (beta - mean * inv)."""
    def average(of: str, out: str) -> tuple[list, dict]:
        return ([node(mean_op, [of], out)], {}) if mean_op == "GlobalAveragePool" else mean(of, out, list(axes), opset)
    nodes, inits = average("x", "mu")
    variance, var_inits = average("sq", "var")
    nodes += [node("Sub", ["x", "mu"], "d")]
    nodes += [node("Pow", ["d", "two"], "sq")] if square == "Pow" else [node("Mul", ["d", "d"], "sq")]
    nodes += variance + [node("Add", ["var", "eps"], "ve"), node("Sqrt", ["ve"], "sd"), node("Reciprocal", ["sd"], "r")]
    inv = "r" if gamma is None else "inv"
    nodes += [node("Mul", ["r", "gamma"], "inv")] if gamma is not None else []
    nodes += [node("Mul", [x, inv], "xs")]
    nodes += [node("Mul", ["mu", inv], "ms"), node("Sub", ["beta", "ms"], "shift")] if beta else \
        [node("Neg", ["mu"], "nm"), node("Mul", ["nm", inv], "shift")]
    nodes += [node("Add", ["xs", "shift"], "y")]
    inits.update(var_inits, two=scalar(2.0), eps=scalar(1e-3), beta=weights(16),
                 **({"gamma": weights(*gamma)} if gamma is not None else {}))
    return model(nodes, X + (Z if x == "z" else []), ["y"] + ([leak] if leak else []), inits, opset)


def rms_norm(opset: int = 13, square: str = "Pow", inverse: str = "Reciprocal", axes=(-1,), x: str = "x",
             leak: str | None = None):
    """x * 1/sqrt(mean(x^2) + eps) (or x / sqrt(...)) * w, as torch's RMSNorm exports."""
    axes = list(axes)
    nodes = [node("Pow", ["x", "two"], "sq")] if square == "Pow" else [node("Mul", ["x", "x"], "sq")]
    variance, inits = mean("sq", "var", axes, opset)
    nodes += variance + [node("Add", ["var", "eps"], "ve"), node("Sqrt", ["ve"], "sd")] + normalise(x, inverse)
    nodes += [node("Mul", ["w", "n"], "y")]
    inits.update(two=scalar(2.0), eps=scalar(1e-6), one=scalar(1.0), w=weights(*SHAPE[-len(axes):]))
    return model(nodes, X + (Z if x == "z" else []), ["y"] + ([leak] if leak else []), inits, opset)


def norm_then(op: str, const_shape: list[int], norm: str = "LayerNormalization", bias: bool = False,
              leak: bool = False):
    """A LayerNormalization (opset 17) or RMSNormalization (opset 23) followed by Mul or Add of a constant."""
    inputs = ["x", "s"] + (["b"] if bias else [])
    nodes = [node(norm, inputs, "n", epsilon=1e-4), node(op, ["n", "c"], "y")]
    inits = {"s": weights(16), "c": weights(*const_shape), **({"b": weights(16)} if bias else {})}
    return model(nodes, X, ["y"] + (["n"] if leak else []), inits, 23 if norm == "RMSNormalization" else 17)


# --- GELU ------------------------------------------------------------------------------------------------------
def half_x_times(part: str, order: str, x: str = "x", half: float = 0.5) -> tuple[list, dict]:
    """0.5 * x * part in one of the orders exporters use: (x*0.5)*part, (x*part)*0.5, x*(part*0.5)."""
    nodes = {"torch": [node("Mul", [x, "half"], "h"), node("Mul", ["h", part], "y")],
             "hf": [node("Mul", [x, part], "h"), node("Mul", ["h", "half"], "y")],
             "last": [node("Mul", [part, "half"], "h"), node("Mul", [x, "h"], "y")]}[order]
    return nodes, {"half": scalar(half)}


def gelu(order: str = "hf", scaled_by: str = "Div", root2: float = math.sqrt(2), x: str = "x", half: float = 0.5,
         leak: str | None = None):
    """0.5 * x * (1 + erf(x / sqrt 2)) (or x * (1/sqrt 2))."""
    constant = root2 if scaled_by == "Div" else 1 / root2
    nodes = [node(scaled_by, ["x", "c"], "s"), node("Erf", ["s"], "e"), node("Add", ["one", "e"], "p")]
    tail, inits = half_x_times("p", order, x, half)
    inits.update(c=scalar(constant), one=scalar(1.0))
    return model(nodes + tail, X + (Z if x == "z" else []), ["y"] + ([leak] if leak else []), inits)


def gelu_tanh(order: str = "torch", cube: str = "Pow", cubic: float = 0.044715, leak: str | None = None):
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))) as GPT-2 exports it."""
    nodes = [node("Pow", ["x", "three"], "x3")] if cube == "Pow" else \
        [node("Mul", ["x", "x"], "x2"), node("Mul", ["x", "x2"], "x3")]
    nodes += [node("Mul", ["x3", "k"], "kx3"), node("Add", ["x", "kx3"], "inner"), node("Mul", ["inner", "c"], "a"),
              node("Tanh", ["a"], "t"), node("Add", ["t", "one"], "p")]
    tail, inits = half_x_times("p", order)
    inits.update(three=scalar(3.0), k=scalar(cubic), c=scalar(math.sqrt(2 / math.pi)), one=scalar(1.0))
    return model(nodes + tail, X, ["y"] + ([leak] if leak else []), inits)


# --- Swish and HardSwish ---------------------------------------------------------------------------------------
def swish(alpha: float | None = None, x: str = "x", leak: bool = False):
    nodes = [node("Mul", ["x", "alpha"], "ax")] if alpha is not None else []
    nodes += [node("Sigmoid", ["ax" if alpha is not None else "x"], "s"), node("Mul", [x, "s"], "y")]
    inits = {"alpha": scalar(alpha)} if alpha is not None else {}
    return model(nodes, X + (Z if x == "z" else []), ["y"] + (["s"] if leak else []), inits)


def hard_swish(form: str = "hardsigmoid", high: float = 6.0, alpha: float = 1 / 6, opset: int = 13):
    """x * HardSigmoid(x) or x * clip(x + 3, 0, high) / 6 in its orders; Clip's bounds are attributes before
    opset 11."""
    if form == "hardsigmoid":
        return model([node("HardSigmoid", ["x"], "h", alpha=alpha, beta=0.5), node("Mul", ["x", "h"], "y")],
                     X, ["y"], opset=opset)
    clip = [node("Add", ["x", "three"], "a")]
    clip += [node("Clip", ["a"], "c", min=0.0, max=high)] if opset < 11 else [node("Clip", ["a", "lo", "hi"], "c")]
    nodes = clip + {"div_last": [node("Mul", ["x", "c"], "m"), node("Div", ["m", "six"], "y")],
                    "div_clip": [node("Div", ["c", "six"], "q"), node("Mul", ["x", "q"], "y")],
                    "sixth_last": [node("Mul", ["x", "c"], "m"), node("Mul", ["m", "sixth"], "y")],
                    "sixth_clip": [node("Mul", ["sixth", "c"], "q"), node("Mul", ["q", "x"], "y")]}[form]
    inits = {"three": scalar(3.0), "six": scalar(6.0), "sixth": scalar(1 / 6)}
    if opset >= 11:
        inits.update(lo=scalar(0.0), hi=scalar(high))
    return model(nodes, X, ["y"], inits, opset)


# --- GroupNorm --------------------------------------------------------------------------------------------------
def group_norm(opset: int = 13, groups: int = 2, view: list[int] | None = None, back: list[int] | None = None):
    """torch's GroupNorm export: Reshape to (N, groups, -1), InstanceNormalization, Reshape back, then the
    per-channel affine map (which stays)."""
    shape = [2, 4, 3, 5]
    nodes = [node("Reshape", ["x", "view"], "v"), node("InstanceNormalization", ["v", "s", "b"], "i", epsilon=1e-5),
             node("Reshape", ["i", "back"], "n"), node("Mul", ["n", "gamma"], "g"), node("Add", ["g", "beta"], "y")]
    inits = {"view": np.array(view or [2, groups, -1], np.int64), "back": np.array(back or shape, np.int64),
             "s": np.ones(groups, np.float32), "b": np.zeros(groups, np.float32),
             "gamma": weights(4, *[1] * (len(back or shape) - 2)), "beta": weights(4, *[1] * (len(back or shape) - 2))}
    return model(nodes, [("x", FLOAT, shape)], ["y"], inits, opset)


CASES = [
    Case("mish", mish(), negatives=[mish(leak=True), mish(x="z")], edges=("zero", "negative", "small")),
    Case("layernorm", layer_norm(), id="layernorm-torch-opset13",
         negatives=[layer_norm(axes=[1]), layer_norm(var_axes=[-2, -1], axes=[-1]), layer_norm(leak="d"),
                    layer_norm(leak="mu"), layer_norm(x="z"), layer_norm(exponent=3.0),
                    layer_norm(eps=np.full(16, 1e-5, np.float32))]),
    Case("layernorm", layer_norm(square="Mul"), id="layernorm-mul-square"),
    Case("layernorm", layer_norm(opset=18), id="layernorm-axes-input-opset18",
         negatives=[layer_norm(opset=18, axes=[0]), layer_norm(opset=18, leak="sq")]),
    Case("layernorm", layer_norm(axes=[1, 2], affine=False), id="layernorm-two-trailing-axes"),
    Case("layernorm-reciprocal", layer_norm(inverse="Reciprocal"), id="layernorm-reciprocal-mul",
         negatives=[layer_norm(inverse="Reciprocal", axes=[1]), layer_norm(inverse="Reciprocal", leak="r")]),
    Case("layernorm-reciprocal", layer_norm(opset=18, square="Mul", inverse="Div1"), id="layernorm-div-one-opset18"),
    Case("layernorm-keras", keras_layer_norm(), id="layernorm-keras-tf2onnx",
         negatives=[keras_layer_norm(mean_op="ReduceMean", axes=[1]), keras_layer_norm(x="z"),
                    keras_layer_norm(leak="inv"), keras_layer_norm(gamma=(2, 1, 16))]),
    Case("layernorm-keras", keras_layer_norm(mean_op="ReduceMean", square="Pow", gamma=None, beta=True),
         id="layernorm-keras-reducemean-beta"),
    Case("layernorm-keras", keras_layer_norm(opset=18, mean_op="ReduceMean", gamma=(16,), beta=True),
         id="layernorm-keras-axes-input-opset18"),
    Case("rmsnorm", rms_norm(), id="rmsnorm-rsqrt",
         negatives=[rms_norm(axes=[1]), rms_norm(x="z"), rms_norm(leak="sq")]),
    Case("rmsnorm", rms_norm(opset=18, square="Mul", inverse="Div1"), id="rmsnorm-div-one-opset18"),
    Case("rmsnorm-div", rms_norm(inverse="Div"), id="rmsnorm-div", negatives=[rms_norm(inverse="Div", x="z")]),
    Case("norm-scale", norm_then("Mul", [16]), id="norm-scale-layernorm",
         negatives=[norm_then("Mul", [3, 1]), norm_then("Mul", [2, 3, 16]), norm_then("Mul", [16], leak=True)]),
    Case("norm-scale", norm_then("Mul", [1, 16], bias=True), id="norm-scale-layernorm-bias"),
    Case("norm-scale", norm_then("Mul", [16], "RMSNormalization"), id="norm-scale-rmsnorm"),
    Case("norm-shift", norm_then("Add", [16]), id="norm-shift-layernorm",
         negatives=[norm_then("Add", [3, 1]), norm_then("Add", [16], "RMSNormalization")]),
    Case("norm-shift", norm_then("Add", [1, 1, 16], bias=True), id="norm-shift-layernorm-bias"),
    Case("gelu", gelu(), id="gelu-hf-order", edges=NO_OVERFLOW,
         negatives=[gelu(root2=1.41), gelu(half=0.6), gelu(x="z"), gelu(leak="e"), gelu(leak="h")]),
    Case("gelu", gelu(order="torch"), id="gelu-half-first"),
    Case("gelu", gelu(order="last", scaled_by="Mul"), id="gelu-half-last-mul-by-inverse-root2"),
    Case("gelu-tanh", gelu_tanh(), id="gelu-tanh-gpt2", edges=NO_OVERFLOW,
         negatives=[gelu_tanh(cubic=0.05), gelu_tanh(leak="t")]),
    Case("gelu-tanh", gelu_tanh(order="hf", cube="Mul"), id="gelu-tanh-cube-by-mul", edges=NO_OVERFLOW),
    Case("swish", swish(), id="silu", negatives=[swish(x="z"), swish(leak=True)]),
    Case("swish", swish(alpha=1.702), id="swish-alpha"),
    Case("hardswish", hard_swish(), id="hardswish-hardsigmoid", edges=NO_OVERFLOW,
         negatives=[hard_swish(alpha=0.2), hard_swish("div_clip", high=5.0)]),
    Case("hardswish", hard_swish("div_clip"), id="hardswish-clip-div", edges=NO_OVERFLOW),
    Case("hardswish", hard_swish("sixth_last"), id="hardswish-clip-sixth-last", edges=NO_OVERFLOW),
    Case("hardswish", hard_swish("sixth_clip", opset=10), id="hardswish-clip-attrs-opset10", edges=NO_OVERFLOW),
    Case("hardswish-div", hard_swish("div_last"), id="hardswish-div", edges=NO_OVERFLOW,
         negatives=[hard_swish("div_last", high=5.0)]),
    Case("groupnorm", group_norm(), id="groupnorm-torch-opset13",
         negatives=[group_norm(view=[2, 2, 2, -1]), group_norm(back=[2, 4, 15])]),
    Case("groupnorm", group_norm(opset=21, groups=4), id="groupnorm-opset21-per-channel"),
]
