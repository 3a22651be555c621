"""A gcc 12 miscompile the generated source must keep away (program.py's BLOCK attribute): a Transpose block (an
`omp simd` gather) compiled out of line had its call deleted, so the next block read a stale arena slot. Built
here with inlining off, at -O1 and -O3, the result must still be the transpose."""

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from tests.helpers import FLOAT, make_model


@pytest.mark.parametrize("flags", ["-O1 -fno-inline", "-O3 -march=native -fno-inline"])
def test_an_out_of_line_transpose_block_still_runs(monkeypatch, flags):
    monkeypatch.setenv("DNNFUSION_CFLAGS", flags)
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Transpose", ["a"], ["t"], perm=[0, 1, 3, 2]),
             helper.make_node("Relu", ["t"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, [2, 1, 4, 20])], ["y"])
    x = np.random.default_rng(0).standard_normal([2, 1, 4, 20]).astype(np.float32)
    y = dnnfusion.compile(model, opt_level="O0").run({"x": x})["y"]
    np.testing.assert_array_equal(y, np.maximum(x, 0).transpose(0, 1, 3, 2))
