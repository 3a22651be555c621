"""A value a kernel's prologue computes that also leaves the block (an SE block's Swish, read by its pooling and
by the gating Mul) is stored once by its own loop before the kernel, which reads it back: computed once, not a
second time inside the kernel's reads."""

import numpy as np
from onnx import helper

import dnnfusion
from dnnfusion.oracle import run_onnxruntime
from tests.helpers import FLOAT, make_model


def swish_pool(also_swish: bool):
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["w"]),
             helper.make_node("GlobalAveragePool", ["w"], ["y"])]
    return make_model(nodes, [("x", FLOAT, [1, 24, 20, 20])], ["y"] + (["w"] if also_swish else []),
                      output_type=FLOAT)


def test_a_prologue_value_that_leaves_the_block_is_computed_once():
    x = np.random.default_rng(0).standard_normal((1, 24, 20, 20)).astype(np.float32) * 4
    for also_swish in (False, True):
        model = swish_pool(also_swish)
        compiled = dnnfusion.compile(model)
        assert compiled.stats["blocks"] == 1
        blocks = compiled.source[compiled.source.index("static BLOCK void"):]
        assert blocks.count("df_sigmoidf(") == 1
        expected = run_onnxruntime(model, {"x": x})
        for name, value in compiled.run({"x": x}).items():
            np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6)
