"""Per-channel affine folding (BatchNormalization, Mul/Add/Sub/Div by a channel constant into Conv,
ConvTranspose and Gemm weights): randomized equivalence with the unrewritten model in onnxruntime, and the
cases that must not fold."""

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from dnnfusion.ir import from_onnx
from dnnfusion.passes import infer_shapes
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.passes import fold_channel_affine
from tests.helpers import FLOAT, make_model


def bn_params(rng: np.random.Generator, prefix: str, channels: int) -> dict[str, np.ndarray]:
    """Scale, B, mean and a positive variance, with edge values: a zero scale and a tiny variance."""
    scale = rng.normal(size=channels).astype(np.float32)
    scale[0] = 0.0
    var = rng.uniform(0.1, 2.0, channels).astype(np.float32)
    var[-1] = 1e-6
    return {f"{prefix}_s": scale, f"{prefix}_b": rng.normal(size=channels).astype(np.float32),
            f"{prefix}_m": rng.normal(size=channels).astype(np.float32), f"{prefix}_v": var}


def bn(prefix: str, x: str, y: str) -> object:
    return helper.make_node("BatchNormalization", [x, f"{prefix}_s", f"{prefix}_b", f"{prefix}_m", f"{prefix}_v"],
                            [y], epsilon=1e-3)


def model_of(nodes, inputs, outputs, inits):
    return make_model(nodes, inputs, outputs, inits, output_type=FLOAT)


def folded_count(model) -> tuple[int, list[str]]:
    graph = infer_shapes(from_onnx(model))
    count = fold_channel_affine(graph)
    return count, [n.op_type for n in graph.nodes]


def check_equivalent(model, feeds: dict[str, np.ndarray]) -> None:
    """Compiled at O3 (rewritten) and O0 (not rewritten) both equal onnxruntime on the original model."""
    expected = run_onnxruntime(model.SerializeToString(), feeds)
    for level in ("O0", "O3"):
        diffs = compare(dnnfusion.compile(model, opt_level=level).run(feeds), expected)
        assert diffs and all(d.ok for d in diffs), (level, diffs)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("group,bias,dims", [(1, True, 2), (1, False, 2), (4, True, 2), (2, False, 1), (1, True, 3)])
def test_conv_batchnorm_folds(seed, group, bias, dims):
    rng = np.random.default_rng(seed)
    spatial = {1: [9], 2: [7, 6], 3: [4, 5, 3]}[dims]
    inits = {"w": rng.normal(size=[8, 8 // group] + [3] * dims).astype(np.float32), **bn_params(rng, "bn", 8)}
    if bias:
        inits["b"] = rng.normal(size=8).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c"], group=group, pads=[1] * 2 * dims)
    model = model_of([conv, bn("bn", "c", "y"), helper.make_node("Relu", ["y"], ["z"])],
                       [("x", FLOAT, [2, 8, *spatial])], ["z"], inits)
    assert folded_count(model) == (1, ["Conv", "Relu"])
    check_equivalent(model, {"x": rng.normal(size=[2, 8, *spatial]).astype(np.float32)})


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_batchnorm_folds(group):
    rng = np.random.default_rng(group)
    inits = {"w": rng.normal(size=[4, 6 // group, 3, 3]).astype(np.float32), "b": rng.normal(size=6).astype(np.float32),
             **bn_params(rng, "bn", 6)}
    conv = helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], group=group, strides=[2, 2])
    model = model_of([conv, bn("bn", "c", "y")], [("x", FLOAT, [1, 4, 5, 5])], ["y"], inits)
    assert folded_count(model) == (1, ["ConvTranspose"])
    check_equivalent(model, {"x": rng.normal(size=[1, 4, 5, 5]).astype(np.float32)})


@pytest.mark.parametrize("trans_b,c_shape,beta", [(0, None, 1.0), (1, [5], 0.5), (0, [3, 1], 2.0), (1, [3, 5], 1.0)])
def test_gemm_then_channel_ops_fold(trans_b, c_shape, beta):
    """Gemm → Mul by a per-column constant → Add a row → Sub a scalar → Div by a per-column constant."""
    rng = np.random.default_rng(7)
    inits = {"w": rng.normal(size=[5, 4] if trans_b else [4, 5]).astype(np.float32),
             "m": rng.normal(size=[5]).astype(np.float32), "a": rng.normal(size=[1, 5]).astype(np.float32),
             "s": np.array(0.25, np.float32), "d": rng.uniform(0.5, 2, [5]).astype(np.float32)}
    if c_shape:
        inits["c"] = rng.normal(size=c_shape).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w"] + (["c"] if c_shape else []), ["g"], transB=trans_b, beta=beta),
             helper.make_node("Mul", ["m", "g"], ["t1"]), helper.make_node("Add", ["t1", "a"], ["t2"]),
             helper.make_node("Sub", ["t2", "s"], ["t3"]), helper.make_node("Div", ["t3", "d"], ["y"])]
    model = model_of(nodes, [("x", FLOAT, [3, 4])], ["y"], inits)
    assert folded_count(model) == (4, ["Gemm"])
    check_equivalent(model, {"x": rng.normal(size=[3, 4]).astype(np.float32)})


def test_constant_minus_x_folds_with_negated_weights():
    rng = np.random.default_rng(3)
    inits = {"w": rng.normal(size=[4, 2, 1, 1]).astype(np.float32), "k": rng.normal(size=[4, 1, 1]).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Sub", ["k", "c"], ["y"])]
    model = model_of(nodes, [("x", FLOAT, [1, 2, 3, 3])], ["y"], inits)
    assert folded_count(model) == (1, ["Conv"])
    check_equivalent(model, {"x": rng.normal(size=[1, 2, 3, 3]).astype(np.float32)})


def test_what_must_not_fold():
    """A conv output read twice, or kept as a graph output; a constant varying along a spatial axis; a
    division by a constant with a zero; a BatchNormalization with a non-constant parameter."""
    rng = np.random.default_rng(5)
    inits = {"w": rng.normal(size=[3, 3, 1, 1]).astype(np.float32), "sp": rng.normal(size=[1, 1, 4, 1]).astype(np.float32),
             "z": np.array([1.0, 0.0, 2.0], np.float32).reshape(3, 1, 1), **bn_params(rng, "bn", 3)}
    cases = {
        "read twice": [helper.make_node("Conv", ["x", "w"], ["c"]), bn("bn", "c", "y"),
                       helper.make_node("Add", ["y", "c"], ["out"])],
        "spatial constant": [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Mul", ["c", "sp"], ["out"])],
        "divide by zero": [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Div", ["c", "z"], ["out"])],
        "variable scale": [helper.make_node("Conv", ["x", "w"], ["c"]),
                           helper.make_node("BatchNormalization", ["c", "gain", "bn_b", "bn_m", "bn_v"], ["out"])],
    }
    for name, nodes in cases.items():
        inputs = [("x", FLOAT, [1, 3, 4, 4])] + ([("gain", FLOAT, [3])] if name == "variable scale" else [])
        model = model_of(nodes, inputs, ["out"], inits)
        assert folded_count(model)[0] == 0, name
    kept_output = model_of([helper.make_node("Conv", ["x", "w"], ["c"]), bn("bn", "c", "out")],
                             [("x", FLOAT, [1, 3, 4, 4])], ["out", "c"], inits)
    assert folded_count(kept_output)[0] == 0
