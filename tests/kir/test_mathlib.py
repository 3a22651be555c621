"""The prelude's vectorizable float32 exp, tanh and erf against float64 references: within 1, 2 and 3 ulp on random bit
patterns and dense ranges, with NaN, infinities, signed zeros, overflow and subnormal results as libm, and saturated
tails exactly 0, +-1 or inf. Then every operator built on them, compiled through dnnfusion.compile, over the whole
float32 range, and Gelu against onnxruntime at large and special values."""

import ctypes
import math

import numpy as np
import pytest

import dnnfusion
from dnnfusion.codegen.build import build, load
from dnnfusion.kir.mathlib import FLOAT_HELPERS, SOURCE
from dnnfusion.oracle import run_onnxruntime
from tests.helpers import FLOAT, one_node_model

HARNESS = """#include <math.h>
#include <stdint.h>
#include <string.h>
""" + SOURCE + "".join(f"""
void apply_{name}(float* restrict y, const float* restrict x, int64_t n) {{
  #pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = {helper}(x[i]);
}}
""" for name, helper in FLOAT_HELPERS.items())


@pytest.fixture(scope="module")
def library():
    return load(build(HARNESS))


def samples() -> np.ndarray:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edges = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72283, 88.72284, -87.3365, -103.97, -104.0, 0.625,
                      -0.625, 0.62499994, 9.0, 9.010913, 9.010914, -9.010914, 1e-30, -1e-30, 1.4e-45], np.float32)
    return np.concatenate([bits, np.linspace(-110, 95, 300_001, dtype=np.float32), edges])


@pytest.mark.parametrize("name,reference,ulps", [("exp", np.exp, 1.0), ("tanh", np.tanh, 2.0),
                                                 ("erf", np.vectorize(math.erf, otypes=[float]), 3.0),
                                                 ("log", np.log, 1.0), ("log1p", np.log1p, 1.0)])
def test_helper_accuracy_and_special_values(library, name, reference, ulps):
    x = samples()
    y = np.empty_like(x)
    getattr(library, f"apply_{name}")(y.ctypes.data_as(ctypes.c_void_p), x.ctypes.data_as(ctypes.c_void_p),
                                      ctypes.c_int64(x.size))
    with np.errstate(all="ignore"):
        exact = reference(x.astype(np.float64))
        rounded = exact.astype(np.float32)
    normal = np.isfinite(rounded) & (np.abs(rounded) >= np.finfo(np.float32).tiny)
    error = np.abs(y[normal].astype(np.float64) - exact[normal]) / np.spacing(np.abs(rounded[normal]))
    assert error.max() <= ulps
    tiny = np.isfinite(rounded) & ~normal                              # subnormal or zero results
    assert np.all(np.abs(y[tiny].astype(np.float64) - exact[tiny]) <= 2 * 1.4e-45)
    assert np.array_equal(np.isnan(y), np.isnan(rounded))
    assert np.array_equal(np.isinf(y) & (y > 0), np.isinf(rounded) & (rounded > 0))
    assert np.array_equal(np.isinf(y) & (y < 0), np.isinf(rounded) & (rounded < 0))
    assert np.array_equal(np.signbit(y[x == 0]), np.signbit(rounded[x == 0]))
    check_saturation_and_specials(x, y, exact)


# --- the public API over the whole float32 range ----------------------------------------------------------------
# Every elementwise operator whose generated C calls a prelude helper (grep `call("exp"|"tanh"|"erf"` in
# dnnfusion/ops; Softmax, LogSoftmax, ReduceLogSumExp and the RNN activations call them on shifted or bounded
# arguments), compiled as a one-node model and run on ~1.1M inputs: 2^20 log-uniform magnitudes from 1e-38 to
# 3.4e38 of both signs, every float within 1024 ulps of each switch-over or saturation point, and special values.

TINY = float(np.finfo(np.float32).tiny)
DENORMAL = 2.0 ** -149
SQRT_2_PI = math.sqrt(2 / math.pi)
TANH_ONE = 9.010912895202637            # the largest float whose tanh rounds below 1 (1 - tanh = 2^-25 at 13 ln2)
ERF_ONE = 3.9192056655883789            # the largest float whose erf rounds below 1
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, DENORMAL, -DENORMAL, 1e-40, -1e-40, TINY, -TINY, 3.4028235e38,
            -3.4028235e38]


def gelu_tanh_edge() -> float:
    """The x < 0 at which Gelu(approximate='tanh')'s tanh argument reaches -TANH_ONE."""
    roots = np.roots([0.044715 * SQRT_2_PI, 0.0, SQRT_2_PI, TANH_ONE])
    return float(next(r.real for r in roots if abs(r.imag) < 1e-9))


EDGES = [TANH_ONE, 9.0, 0.625, ERF_ONE, 4.0, 0.9, 88.72283935546875, -87.33654, -103.972084, 16.635532,
         gelu_tanh_edge(), -ERF_ONE * math.sqrt(2), -4 * math.sqrt(2)]


def window(edge: float, half: int = 1024) -> np.ndarray:
    """The 2 * half + 1 consecutive floats centred on `edge`, of both signs."""
    bits = int(np.float32(abs(edge)).view(np.uint32)) + np.arange(-half, half + 1, dtype=np.int64)
    magnitudes = bits.astype(np.uint32).view(np.float32)
    return np.concatenate([magnitudes, -magnitudes])


@pytest.fixture(scope="module")
def sweep() -> np.ndarray:
    """The inputs: log-uniform magnitudes, the edge windows and the special values (float32)."""
    magnitudes = np.geomspace(1e-38, 3.4e38, 2**19).astype(np.float32)
    return np.concatenate([magnitudes, -magnitudes, *map(window, EDGES), np.array(SPECIALS, np.float32)])


@pytest.fixture(scope="module")
def erf64(sweep) -> np.ndarray:
    """math.erf of the sweep and of the sweep / sqrt(2), in float64 (shared by Erf and Gelu)."""
    x = sweep.astype(np.float64)
    return np.frompyfunc(math.erf, 1, 1)(np.concatenate([x, x / math.sqrt(2)])).astype(np.float64)


def compiled_unary(op: str, x: np.ndarray, **attrs) -> np.ndarray:
    """`op` on `x` through dnnfusion.compile at O3 (one node, float32 in and out; Swish needs opset 24)."""
    model = one_node_model(op, [("x", FLOAT, [x.size])], [("y", FLOAT)], opset=24 if op == "Swish" else 22, **attrs)
    compiled = dnnfusion.compile(model, input_shapes={"x": x.shape}, opt_level="O3")
    assert compiled.stats["fallback_ops"] == []
    return compiled.run({"x": x})["y"]


def ulp(values: np.ndarray) -> np.ndarray:
    """The float32 ulp of each (finite, float32-representable) value, as float64: 2^(exponent - 23), at least
    the subnormal spacing (np.spacing would give inf at the largest float)."""
    exponent = np.frexp(np.abs(values).astype(np.float64))[1]
    return np.ldexp(1.0, np.maximum(exponent - 24, -149))


def ulp_errors(y: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|y - exact| in ulps of the correctly rounded float32 result (normal results only: others give 0)."""
    with np.errstate(over="ignore"):
        rounded = exact.astype(np.float32)
    normal = np.isfinite(rounded) & (np.abs(rounded) >= TINY)
    error = np.zeros(y.shape)
    error[normal] = np.abs(y[normal] - exact[normal]) / ulp(rounded[normal])
    return error


def check_saturation_and_specials(x: np.ndarray, y: np.ndarray, exact: np.ndarray) -> None:
    """Wherever the rounded reference is 0, +-1 or +-inf the result is exactly that; NaN exactly where the
    reference is NaN; the sign of zero kept for zero inputs."""
    with np.errstate(over="ignore"):
        rounded = exact.astype(np.float32)
    saturated = (rounded == 0) | (np.abs(rounded) == 1) | np.isinf(rounded)
    wrong = saturated & (y != rounded)
    assert not wrong.any(), list(zip(x[wrong][:5], y[wrong][:5], rounded[wrong][:5]))
    assert np.array_equal(np.isnan(y), np.isnan(rounded))
    zero = x == 0
    assert np.array_equal(np.signbit(y[zero]), np.signbit(rounded[zero]))


def mish64(x: np.ndarray) -> np.ndarray:
    """x tanh(ln(1 + e^x)) in float64."""
    return x * np.tanh(np.logaddexp(0.0, x))


# op, float64 reference of (x, math.erf of x), bound in ulps on normal results, the x below which only the
# absolute error is bounded, and that bound (of x and the reference) there and on subnormal results
SMOOTH = [
    ("Exp", lambda x, erf: np.exp(x), 1.0, -np.inf, lambda x, exact: DENORMAL),
    ("Tanh", lambda x, erf: np.tanh(x), 2.0, -np.inf, lambda x, exact: DENORMAL),
    ("Erf", lambda x, erf: erf, 3.0, -np.inf, lambda x, exact: DENORMAL),
    # 1 / (1 + e^-x): e^-x overflows below x = -88.72, where the result (e^x) is still subnormal
    ("Sigmoid", lambda x, erf: 1 / (1 + np.exp(-x)), 3.0, -np.inf, lambda x, exact: TINY),
    # x sigmoid(x): the sigmoid is subnormal below x = -87.34 and 0 below -88.72, where x e^x is still normal
    ("Swish", lambda x, erf: x / (1 + np.exp(-x)), 3.0, -87.33, lambda x, exact: np.abs(x) * TINY + DENORMAL),
    ("Softplus", lambda x, erf: np.logaddexp(0.0, x), 2.0, -np.inf, lambda x, exact: DENORMAL),
    # about x e^x for x << 0: below x = -87.34 e^x is subnormal, and its rounding is multiplied by |x|; the
    # quotient taken in float (ops/activations.Mish) leaves up to 6 ulp elsewhere
    ("Mish", lambda x, erf: mish64(x), 6.0, -87.33, lambda x, exact: np.abs(x) * DENORMAL + 3 * ulp(exact)),
]


@pytest.mark.parametrize("op,reference,ulps,tail_below,tail_bound", SMOOTH, ids=[s[0] for s in SMOOTH])
def test_operator_over_the_whole_float_range(sweep, erf64, op, reference, ulps, tail_below, tail_bound):
    x = sweep
    y = compiled_unary(op, x).astype(np.float64)
    with np.errstate(all="ignore"):
        exact = reference(x.astype(np.float64), erf64[:x.size])
        rounded = exact.astype(np.float32)
    check_saturation_and_specials(x, y, exact)
    tail = np.isfinite(rounded) & ((np.abs(rounded) < TINY) | (x < tail_below))
    error = np.where(tail, 0.0, ulp_errors(y, exact))
    worst = error.argmax()
    assert error[worst] <= ulps, (x[worst], y[worst], exact[worst], error[worst])
    assert np.all(np.abs(y[tail] - exact[tail]) <= tail_bound(x[tail].astype(np.float64), exact[tail]))


def gelu64(x: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """0.5 x (1 + phi) in float64, phi being tanh(...) or erf(x / sqrt 2)."""
    return 0.5 * x * (1 + phi)


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_over_the_whole_float_range(sweep, erf64, approximate):
    """x >= 0: within 2 ulp. x < 0, where 1 + phi cancels: within 2^-23 |x| (phi's rounding near -1, 2^-24,
    times 0.5 |x|, twice over) plus half a subnormal. Where phi is -1 to within 2^-26: exactly -0 (the
    saturated tanh once gave -2.98e22 at x = -1e30). NaN for NaN and -inf, as onnxruntime gives."""
    x = sweep
    y = compiled_unary("Gelu", x, approximate=approximate).astype(np.float64)
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        phi = np.tanh(SQRT_2_PI * (x64 + 0.044715 * x64 ** 3)) if approximate == "tanh" else erf64[x.size:]
        exact = gelu64(x64, phi)
    finite = np.isfinite(x)
    body = finite & (x >= 0)
    assert ulp_errors(y[body], exact[body]).max() <= 2.0
    cancelling = finite & (x < 0) & (1 + phi >= 2.0 ** -26)
    assert np.all(np.abs(y[cancelling] - exact[cancelling]) <= np.abs(x64[cancelling]) * 2.0 ** -23 + DENORMAL)
    saturated = finite & (1 + phi < 2.0 ** -26)
    assert saturated.sum() > 2**18 and np.all(y[saturated] == 0) and np.all(np.signbit(y[saturated]))
    assert np.array_equal(np.isnan(y), np.isnan(x) | (x == -np.inf))
    assert y[x == np.inf].tolist() == [np.inf]


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_matches_onnxruntime_at_large_and_special_values(approximate):
    x = np.array([-3.4028235e38, -1e30, -1e13, -7e12, -1e4, -100, -20, -10, -9.02, -9, 9, 9.02, 10, 100, 1e4,
                  7e12, 1e13, 1e30, 3.4028235e38, np.inf, -np.inf, np.nan, 0.0, -0.0], np.float32)
    model = one_node_model("Gelu", [("x", FLOAT, [x.size])], [("y", FLOAT)], approximate=approximate)
    ours = dnnfusion.compile(model, opt_level="O3").run({"x": x})["y"]
    theirs = run_onnxruntime(model, {"x": x}, threads=1)["y"]
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(np.signbit(ours), np.signbit(theirs))
