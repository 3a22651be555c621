"""The prelude's vectorizable float32 exp, tanh and erf against float64 references: within 1, 2 and 3 ulp on random bit
patterns and dense ranges, with NaN, infinities, signed zeros, overflow and subnormal results as libm."""

import ctypes
import math

import numpy as np
import pytest

from dnnfusion.codegen.build import build, load
from dnnfusion.codegen.mathlib import FLOAT_HELPERS, SOURCE

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
                      -0.625, 0.62499994, 9.0, 1e-30, -1e-30, 1.4e-45], np.float32)
    return np.concatenate([bits, np.linspace(-110, 95, 300_001, dtype=np.float32), edges])


@pytest.mark.parametrize("name,reference,ulps", [("exp", np.exp, 1.0), ("tanh", np.tanh, 2.0),
                                                 ("erf", np.vectorize(math.erf, otypes=[float]), 3.0)])
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
