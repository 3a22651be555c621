"""Generated code of the elementwise operators: chains of them compile into one block with no fallback and
match onnxruntime (integer division and modulo signs, NaN through max/min, quantization rounding included)."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import dnnfusion
from dnnfusion.oracle import compare, run_onnxruntime
from tests.helpers import FLOAT, INT64, make_model

INT32, UINT8, BOOL = TensorProto.INT32, TensorProto.UINT8, TensorProto.BOOL
rng = np.random.default_rng(7)


def node(op, inputs, output, **attrs):
    return helper.make_node(op, inputs, [output], **attrs)


def compiled_matches(nodes, inputs, feeds, out_type, initializers=None, opset=21):
    """Compile the chain ending in 'y', check it is one native block, and compare with onnxruntime. The first
    node is the planner's seed: every other node must be reachable from it for the chain to be one block."""
    model = make_model(nodes, inputs, ["y"], initializers, opset)
    model.ir_version = 10
    model.graph.output[0].type.tensor_type.elem_type = out_type
    compiled = dnnfusion.compile(model)
    assert compiled.stats["fallback_ops"] == []
    assert compiled.stats["blocks"] == 1
    ours, theirs = compiled.run(feeds), run_onnxruntime(model, feeds)
    assert all(d.ok for d in compare(ours, theirs)), compare(ours, theirs)
    return ours["y"]


def test_gelu_by_erf_chain():
    nodes = [node("Add", ["x", "b"], "h"), node("Div", ["h", "sqrt2"], "d"), node("Erf", ["d"], "e"),
             node("Add", ["e", "one"], "e1"), node("Mul", ["h", "e1"], "m"), node("Mul", ["m", "half"], "g"),
             node("Gelu", ["g"], "t", approximate="tanh"), node("Gelu", ["t"], "y")]
    consts = {"sqrt2": np.array(np.sqrt(2), np.float32), "one": np.array(1, np.float32),
              "half": np.array(0.5, np.float32), "b": rng.standard_normal(16).astype(np.float32)}
    feeds = {"x": rng.standard_normal((3, 16)).astype(np.float32) * 3}
    compiled_matches(nodes, [("x", FLOAT, [3, 16])], feeds, FLOAT, consts)


ACTIVATION_CHAINS = {
    "relu-family": [("LeakyRelu", {"alpha": 0.1}), ("HardSwish", {}), ("Softplus", {}), ("Selu", {})],
    "smooth": [("Mish", {}), ("Celu", {"alpha": 0.5}), ("Shrink", {"lambd": 0.3, "bias": 0.1}), ("HardSigmoid", {})],
    "gates": [("Softsign", {}), ("Swish", {"alpha": 1.5}), ("Elu", {}), ("ThresholdedRelu", {"alpha": 0.2}),
              ("Sigmoid", {}), ("Tanh", {})],
}


@pytest.mark.parametrize("chain", ACTIVATION_CHAINS.values(), ids=ACTIVATION_CHAINS.keys())
def test_activation_chains_with_special_values(chain):
    nodes = [node(op, ["x" if k == 0 else f"v{k}"], "y" if k == len(chain) - 1 else f"v{k + 1}", **attrs)
             for k, (op, attrs) in enumerate(chain)]
    x = (rng.standard_normal((4, 8)) * 4).astype(np.float32)
    x[0, :4] = [np.nan, np.inf, -np.inf, 0]                      # compare() requires nan exactly where ort has it
    compiled_matches(nodes, [("x", FLOAT, [4, 8])], {"x": x}, FLOAT, opset=24)


def test_variadic_max_min_sum_mean_broadcast():
    nodes = [node("Relu", ["x"], "r"), node("Max", ["r", "x", "bias"], "m"), node("Min", ["m", "cap"], "n"),
             node("Sum", ["n", "x", "bias"], "s"), node("Mean", ["s", "x", "cap"], "y")]
    x = rng.standard_normal((3, 8)).astype(np.float32)
    x[0, :2] = [np.nan, -np.inf]                                   # nan wins in max and min, as in numpy
    feeds = {"x": x, "cap": rng.standard_normal((3, 1)).astype(np.float32)}
    compiled_matches(nodes, [("x", FLOAT, [3, 8]), ("cap", FLOAT, [3, 1])], feeds, FLOAT,
                     {"bias": rng.standard_normal(8).astype(np.float32)})


def test_clip_where_cast_mix():
    nodes = [node("Neg", ["x"], "n"), node("Clip", ["n", "lo", "hi"], "c"), node("Greater", ["c", "zero"], "pos"),
             node("Where", ["pos", "c", "n"], "w"), node("Clip", ["w", "", "cap"], "w2"),
             node("Cast", ["w2"], "i", to=INT32), node("Abs", ["i"], "a"), node("Cast", ["a"], "f", to=FLOAT),
             node("Round", ["w2"], "r"), node("Sub", ["r", "f"], "y")]
    consts = {"lo": np.array(-1.5, np.float32), "zero": np.array(0, np.float32), "cap": np.array(2.5, np.float32)}
    feeds = {"x": (rng.standard_normal((5, 6)) * 3).astype(np.float32), "hi": np.array(2.25, np.float32)}
    feeds["x"][0, :4] = [-0.5, -1.5, -2.5, 0.5]                   # rounding halves to even
    compiled_matches(nodes, [("x", FLOAT, [5, 6]), ("hi", FLOAT, [])], feeds, FLOAT, consts)


@pytest.mark.parametrize("ty, dtype", [(INT32, np.int32), (INT64, np.int64)])
def test_integer_div_and_mod_signs(ty, dtype):
    nodes = [node("Neg", ["a"], "na"), node("Div", ["na", "b"], "q"), node("Mod", ["na", "b"], "m"),
             node("Mod", ["na", "b"], "f", fmod=1), node("Mul", ["q", "b"], "qb"), node("Add", ["qb", "f"], "back"),
             node("Sub", ["back", "na"], "zero"), node("Mul", ["m", "ten"], "m10"), node("Add", ["m10", "f"], "mf"),
             node("Add", ["mf", "zero"], "y")]
    a = rng.integers(-40, 40, (6, 7)).astype(dtype)
    b = rng.integers(1, 9, (7,)).astype(dtype) * np.where(np.arange(7) % 2, 1, -1).astype(dtype)
    y = compiled_matches(nodes, [("a", ty, [6, 7]), ("b", ty, [7])], {"a": a, "b": b}, ty,
                         {"ten": np.array(10, dtype)})
    np.testing.assert_array_equal(y, np.mod(-a, b) * 10 + np.fmod(-a, b))     # q * b + fmod gives back -a


def test_logic_bitwise_and_pow():
    nodes = [node("IsNaN", ["x"], "nan"), node("Where", ["nan", "zero", "x"], "w"), node("Not", ["nan"], "ok"),
             node("Less", ["w", "t"], "lt"), node("And", ["ok", "lt"], "keep"),
             node("IsInf", ["w"], "inf", detect_negative=0), node("Or", ["keep", "inf"], "k2"),
             node("Xor", ["k2", "lt"], "k3"), node("Cast", ["k3"], "u", to=UINT8),
             node("BitShift", ["u", "three"], "sh", direction="LEFT"), node("BitwiseOr", ["sh", "v"], "o"),
             node("BitwiseNot", ["o"], "nt"), node("BitwiseXor", ["nt", "v"], "xr"), node("Cast", ["xr"], "xf", to=FLOAT),
             node("Pow", ["xf", "two"], "p"), node("Sqrt", ["p"], "y")]
    x = rng.standard_normal((3, 10)).astype(np.float32)
    x[0, :3] = [np.nan, np.inf, -np.inf]
    feeds = {"x": x, "t": rng.standard_normal(10).astype(np.float32),
             "v": rng.integers(0, 255, (3, 10)).astype(np.uint8)}
    consts = {"zero": np.array(0, np.float32), "three": np.array(3, np.uint8), "two": np.array(2, np.int64)}
    compiled_matches(nodes, [("x", FLOAT, [3, 10]), ("t", FLOAT, [10]), ("v", UINT8, [3, 10])], feeds, FLOAT,
                     consts, opset=18)


def test_quantize_dequantize_per_axis():
    nodes = [node("Relu", ["x"], "r"), node("QuantizeLinear", ["r", "scale", "zp"], "q", axis=1),
             node("DequantizeLinear", ["q", "scale", "zp"], "d", axis=1), node("Add", ["d", "x"], "y")]
    consts = {"scale": np.array([0.125, 0.25, 0.5, 0.0625], np.float32), "zp": np.array([0, 3, 10, 200], np.uint8)}
    x = (rng.standard_normal((2, 4, 5)) * 8).astype(np.float32)
    x[0, 0, :3] = [0.0625, 0.1875, 40.0]                          # ties to even, and saturation at 255
    compiled_matches(nodes, [("x", FLOAT, [2, 4, 5])], {"x": x}, FLOAT, consts)


def test_dropout_inference_and_prelu():
    nodes = [node("PRelu", ["x", "slope"], "p"), helper.make_node("Dropout", ["p"], ["d", "mask"]),
             node("Cast", ["mask"], "mf", to=FLOAT), node("Mul", ["d", "mf"], "y")]
    feeds = {"x": rng.standard_normal((2, 3, 4)).astype(np.float32)}
    compiled_matches(nodes, [("x", FLOAT, [2, 3, 4])], feeds, FLOAT, {"slope": np.array([0.1, 0.2, 0.3], np.float32)
                                                                     .reshape(3, 1)})


def test_a_short_outer_axis_before_a_long_simd_axis_builds():
    """(5, 8192, 1): two loops after the size-1 axis drops, a short parallel one and the SIMD one; collapsing
    them put a simd pragma between collapsed loops, which gcc rejects (found by the fuzzer)."""
    x = np.random.default_rng(3).standard_normal((5, 8192, 1)).astype(np.float32)
    nodes = [node("Exp", ["x"], "a"), node("Sigmoid", ["a"], "y")]
    compiled_matches(nodes, [("x", FLOAT, [5, 8192, 1])], {"x": x}, FLOAT)


@pytest.mark.parametrize("power", [2.0, 3.0, 4.0, 2.5])
def test_pow_by_a_small_literal_is_a_product(power):
    """x ** 2, 3, 4 become products (no powf call in the generated C); other exponents keep powf; both match
    onnxruntime on negatives, zeros, infinities and NaN."""
    x = np.concatenate([rng.standard_normal(60).astype(np.float32) * 4,
                        np.array([0.0, -0.0, np.inf, -np.inf], np.float32)]).reshape(8, 8)
    if power == 2.5:
        x = np.abs(x)
    model = make_model([node("Pow", ["x", "p"], "y")], [("x", FLOAT, [8, 8])], ["y"],
                       {"p": np.array(power, np.float32)}, 17)
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    compiled = dnnfusion.compile(model)
    block = compiled.source.split("static BLOCK")[1]
    assert ("powf(" in block) == (power == 2.5)
    ours, theirs = compiled.run({"x": x}), run_onnxruntime(model, {"x": x})
    assert all(d.ok for d in compare(ours, theirs)), compare(ours, theirs)


@pytest.mark.parametrize("gate_shape, merges", [([1, 6, 1, 1], True), ([1, 1, 7, 7], True), ([1, 6, 7, 1], False)])
def test_short_planes_run_as_one_loop_unless_a_read_splits_them(gate_shape, merges):
    """A [1, 6, 7, 7] chain runs one 49-element SIMD loop per channel where every read indexes the plane as a
    whole (a per-channel gate, a plane broadcast over channels); a read that needs the plane's rows apart (a
    [1, 6, 7, 1] broadcast) keeps the row and column loops. Both match onnxruntime."""
    nodes = [node("Sigmoid", ["g"], "s"), node("Mul", ["x", "s"], "m"), node("Relu", ["m"], "y")]
    feeds = {"x": rng.standard_normal((1, 6, 7, 7)).astype(np.float32),
             "g": rng.standard_normal(gate_shape).astype(np.float32)}
    model = make_model(nodes, [("x", FLOAT, [1, 6, 7, 7]), ("g", FLOAT, gate_shape)], ["y"])
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    compiled = dnnfusion.compile(model)
    assert ("< 49;" in compiled.source) is merges and ("< 7;" in compiled.source) is not merges
    ours, theirs = compiled.run(feeds), run_onnxruntime(model, feeds)
    assert all(d.ok for d in compare(ours, theirs)), compare(ours, theirs)
