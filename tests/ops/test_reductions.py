"""Reductions, softmax, normalizations and scans: opset-dependent semantics, data-dependent shape rules,
tie-breaking, FLOP counts and error messages, checked against onnxruntime where that is meaningful."""

from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto

from dnnfusion import ops
from dnnfusion.errors import InvalidModelError, UnsupportedOperatorError
from dnnfusion.pipeline import load
from dnnfusion.ops import MappingType
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.runtime import run_reference
from tests.helpers import one_node_model as model

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64
RNG = np.random.default_rng(0)


def run_both(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our reference outputs, after asserting they match onnxruntime's."""
    ours = run_reference(load(m, {k: v.shape for k, v in feeds.items()}), feeds)
    diffs = compare(ours, run_onnxruntime(m, feeds))
    assert all(d.ok for d in diffs), diffs
    return ours


def x_of(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# --- Reduce* ------------------------------------------------------------------------------------------

def test_reduce_axes_attribute_before_opset_18_and_input_since():
    x = x_of(2, 3, 4)
    old = model("ReduceMean", [("x", FLOAT, x.shape)], [("y", FLOAT)], 13, axes=[0, -1], keepdims=0)
    new = model("ReduceMean", [("x", FLOAT, x.shape)], [("y", FLOAT)], 18,
                {"axes": np.array([0, -1], np.int64)}, keepdims=0)
    assert load(new, {"x": x.shape}).outputs[0].shape == (3,)
    np.testing.assert_allclose(run_both(old, {"x": x})["y"], run_both(new, {"x": x})["y"], rtol=1e-6)


def test_reduce_sum_takes_axes_input_since_opset_13():
    x = x_of(2, 3)
    m = model("ReduceSum", [("x", FLOAT, x.shape)], [("y", FLOAT)], 13, {"axes": np.array([1], np.int64)})
    np.testing.assert_allclose(run_both(m, {"x": x})["y"], x.sum(axis=1, keepdims=True), rtol=1e-6)


def test_runtime_axes_leave_reduced_extents_unknown():
    x = x_of(3, 1, 4)
    keep = model("ReduceMax", [("x", FLOAT, x.shape), ("axes", INT64, [1])], [("y", FLOAT)], 18)
    drop = model("ReduceMax", [("x", FLOAT, x.shape), ("axes", INT64, [2])], [("y", FLOAT)], 18, keepdims=0)
    assert load(keep, {"x": x.shape, "axes": (1,)}).outputs[0].shape == (None, 1, None)
    assert load(drop, {"x": x.shape, "axes": (2,)}).outputs[0].shape == (None,)
    y = run_both(drop, {"x": x, "axes": np.array([0, 2], np.int64)})["y"]
    assert y.shape == (1,)


def test_empty_axes_reduce_everything_unless_noop():
    x = x_of(2, 3)
    axes = [("x", FLOAT, x.shape), ("axes", INT64, [0])]
    everything = model("ReduceSum", axes, [("y", FLOAT)], 13)
    noop = model("ReduceSum", axes, [("y", FLOAT)], 13, noop_with_empty_axes=1)
    feeds = {"x": x, "axes": np.zeros(0, np.int64)}
    assert load(noop, {"x": x.shape, "axes": (0,)}).outputs[0].shape == (2, 3)
    np.testing.assert_allclose(run_both(everything, feeds)["y"], x.sum(keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(run_both(noop, feeds)["y"], x)


@pytest.mark.parametrize("op, identity", [("ReduceMax", -np.inf), ("ReduceMin", np.inf), ("ReduceProd", 1.0),
                                          ("ReduceSum", 0.0), ("ReduceLogSumExp", -np.inf), ("ReduceL2", 0.0)])
def test_empty_set_reduces_to_the_identity(op, identity):
    m = model(op, [("x", FLOAT, [2, 0, 3])], [("y", FLOAT)], 18, {"axes": np.array([1], np.int64)})
    y = run_reference(load(m), {"x": np.zeros((2, 0, 3), np.float32)})["y"]
    assert y.shape == (2, 1, 3) and np.all(y == identity)


def test_reduce_max_of_integers_and_log_sum_exp_is_stable():
    ints = RNG.integers(-100, 100, (3, 4)).astype(np.int64)
    m = model("ReduceMax", [("x", INT64, ints.shape)], [("y", INT64)], 13, axes=[1], keepdims=0)
    np.testing.assert_array_equal(run_both(m, {"x": ints})["y"], ints.max(axis=1))
    big = np.array([[1000.0, 1000.0], [-np.inf, -np.inf]], np.float32)
    m = model("ReduceLogSumExp", [("x", FLOAT, big.shape)], [("y", FLOAT)], 13, axes=[1], keepdims=0)
    y = run_reference(load(m), {"x": big})["y"]
    np.testing.assert_allclose(y, [1000 + np.log(2), -np.inf])


def test_repeated_axes_are_rejected():
    m = model("ReduceSum", [("x", FLOAT, [2, 3])], [("y", FLOAT)], 13, {"axes": np.array([1, -1], np.int64)})
    with pytest.raises(InvalidModelError, match="same axis twice"):
        load(m)


def test_reduce_flops_count_input_elements():
    m = model("ReduceSumSquare", [("x", FLOAT, [4, 5])], [("y", FLOAT)], 13, axes=[1])
    node = load(m).nodes[0]
    assert ops.lookup(node).flops(node) == 20


# --- ArgMax / ArgMin ------------------------------------------------------------------------------

def test_argmax_ties_take_first_or_last_index():
    x = np.array([[1, 3, 3], [2, 2, 0]], np.float32)
    first = model("ArgMax", [("x", FLOAT, x.shape)], [("y", INT64)], 13, axis=1, keepdims=0)
    last = model("ArgMax", [("x", FLOAT, x.shape)], [("y", INT64)], 13, axis=1, select_last_index=1)
    np.testing.assert_array_equal(run_both(first, {"x": x})["y"], [1, 0])
    np.testing.assert_array_equal(run_both(last, {"x": x})["y"], [[2], [1]])


def test_argmin_over_an_empty_axis_is_invalid():
    m = model("ArgMin", [("x", FLOAT, [2, 0])], [("y", INT64)], 13, axis=1)
    with pytest.raises(InvalidModelError, match="axis 1 .* is empty"):
        load(m)


# --- Softmax family -----------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
def test_axis_coerces_to_2d_before_opset_13(op):
    x = x_of(2, 3, 4)
    old = run_both(model(op, [("x", FLOAT, x.shape)], [("y", FLOAT)], 11, axis=1), {"x": x})["y"]
    new = run_both(model(op, [("x", FLOAT, x.shape)], [("y", FLOAT)], 13, axis=1), {"x": x})["y"]
    assert not np.allclose(old, new)   # one block of 12 versus 3 along axis 1


def test_hardmax_marks_the_first_maximum():
    x = np.array([[2, 5, 5, 1]], np.float32)
    m = model("Hardmax", [("x", FLOAT, x.shape)], [("y", FLOAT)], 13)
    np.testing.assert_array_equal(run_reference(load(m), {"x": x})["y"], [[0, 1, 0, 0]])


def test_softmax_flops_and_mapping():
    node = load(model("Softmax", [("x", FLOAT, [3, 7])], [("y", FLOAT)], 13)).nodes[0]
    assert ops.lookup(node).flops(node) == 5 * 21
    assert ops.get("Softmax").mapping is MappingType.MANY_TO_MANY


# --- normalizations ------------------------------------------------------------------------------

def test_layer_norm_mean_and_inv_std_outputs():
    x = x_of(2, 3, 4)
    params = {"scale": x_of(3, 4), "bias": x_of(3, 4)}
    m = model("LayerNormalization", [("x", FLOAT, x.shape)], [("y", FLOAT), ("mean", FLOAT), ("inv", FLOAT)],
              17, params, axis=1)
    g = load(m)
    assert [v.shape for v in g.outputs] == [(2, 3, 4), (2, 1, 1), (2, 1, 1)]
    out = run_both(m, {"x": x})
    np.testing.assert_allclose(out["mean"].ravel(), x.reshape(2, -1).mean(axis=1), rtol=1e-5)


def test_batch_norm_inference_is_one_to_one_and_training_is_rejected():
    x = x_of(2, 3, 4, 4)
    params = {"s": x_of(3), "b": x_of(3), "m": x_of(3), "v": np.abs(x_of(3)) + 0.5}
    m = model("BatchNormalization", [("x", FLOAT, x.shape)], [("y", FLOAT)], 15, params)
    run_both(m, {"x": x})
    assert ops.get("BatchNormalization").mapping is MappingType.ONE_TO_ONE
    training = model("BatchNormalization", [("x", FLOAT, x.shape)], [("y", FLOAT), ("rm", FLOAT), ("rv", FLOAT)],
                     15, params, training_mode=1)
    with pytest.raises(UnsupportedOperatorError, match="training mode"):
        load(training)


def test_group_norm_scale_is_per_group_in_opset_18_and_per_channel_since_21():
    x = x_of(2, 4, 3)
    per_group = {"s": np.array([2.0, 3.0], np.float32), "b": np.array([0.5, -1.0], np.float32)}
    per_channel = {k: np.repeat(v, 2) for k, v in per_group.items()}
    y18 = run_reference(load(model("GroupNormalization", [("x", FLOAT, x.shape)], [("y", FLOAT)], 18,
                                   per_group, num_groups=2)), {"x": x})["y"]
    y21 = run_both(model("GroupNormalization", [("x", FLOAT, x.shape)], [("y", FLOAT)], 21,
                         per_channel, num_groups=2), {"x": x})["y"]
    np.testing.assert_allclose(y18, y21, rtol=1e-5)
    with pytest.raises(InvalidModelError, match=r"opset 21 expects one value per channel: \(4,\)"):
        load(model("GroupNormalization", [("x", FLOAT, x.shape)], [("y", FLOAT)], 21, per_group, num_groups=2))
    with pytest.raises(InvalidModelError, match="num_groups=3 must be a positive divisor"):
        load(model("GroupNormalization", [("x", FLOAT, x.shape)], [("y", FLOAT)], 21, per_channel, num_groups=3))


@pytest.mark.parametrize("op, attrs, params", [
    ("InstanceNormalization", {}, {"s": np.array([1.5, -0.5, 2.0], np.float32), "b": np.zeros(3, np.float32)}),
    ("LpNormalization", {"axis": 1, "p": 1}, {}),
    ("LRN", {"size": 3, "alpha": 0.1}, {}),
    ("MeanVarianceNormalization", {"axes": [0, 2]}, {}),
])
def test_normalizations_match_onnxruntime(op, attrs, params):
    x = x_of(2, 3, 5, 2)
    run_both(model(op, [("x", FLOAT, x.shape)], [("y", FLOAT)], 17, params, **attrs), {"x": x})


def test_lrn_even_size_window_reaches_further_forward():
    x = x_of(1, 5, 2)
    y = run_reference(load(model("LRN", [("x", FLOAT, x.shape)], [("y", FLOAT)], 13, size=4, alpha=1.0)), {"x": x})["y"]
    window = [(x[:, max(c - 1, 0):c + 3] ** 2).sum(axis=1) for c in range(5)]   # c - floor(3/2) .. c + ceil(3/2)
    np.testing.assert_allclose(y, x / (1 + np.stack(window, axis=1) / 4) ** 0.75, rtol=1e-5)


def test_lp_normalization_of_a_zero_vector_is_zero():
    x = np.array([[0.0, 0.0], [3.0, 4.0]], np.float32)
    y = run_reference(load(model("LpNormalization", [("x", FLOAT, x.shape)], [("y", FLOAT)], 22)), {"x": x})["y"]
    np.testing.assert_allclose(y, [[0, 0], [0.6, 0.8]])


# --- scans -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("exclusive, reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum_variants(exclusive, reverse):
    x = x_of(3, 4)
    m = model("CumSum", [("x", FLOAT, x.shape)], [("y", FLOAT)], 14, {"axis": np.array(-1, np.int64)},
              exclusive=exclusive, reverse=reverse)
    run_both(m, {"x": x})


def test_topk_ties_and_static_or_runtime_k():
    x = np.array([[3, 1, 3, 2, 1]], np.int64)
    largest = model("TopK", [("x", INT64, x.shape)], [("v", INT64), ("i", INT64)], 11, {"k": np.array([3], np.int64)})
    smallest = model("TopK", [("x", INT64, x.shape)], [("v", INT64), ("i", INT64)], 11,
                     {"k": np.array([3], np.int64)}, largest=0)
    assert [v.shape for v in load(largest).outputs] == [(1, 3), (1, 3)]
    np.testing.assert_array_equal(run_reference(load(largest), {"x": x})["i"], [[0, 2, 3]])
    np.testing.assert_array_equal(run_reference(load(smallest), {"x": x})["i"], [[1, 4, 3]])
    runtime = model("TopK", [("x", FLOAT, [2, 6]), ("k", INT64, [1])], [("v", FLOAT), ("i", INT64)], 11)
    assert load(runtime, {"x": (2, 6), "k": (1,)}).outputs[0].shape == (2, None)
    assert run_both(runtime, {"x": x_of(2, 6), "k": np.array([4], np.int64)})["v"].shape == (2, 4)


def test_topk_k_attribute_before_opset_10_and_range_check():
    x = x_of(2, 5)
    m = model("TopK", [("x", FLOAT, x.shape)], [("v", FLOAT), ("i", INT64)], 9, k=2, axis=1)
    run_both(m, {"x": x})
    too_big = model("TopK", [("x", FLOAT, x.shape)], [("v", FLOAT), ("i", INT64)], 11, {"k": np.array([6], np.int64)})
    with pytest.raises(InvalidModelError, match=r"k=6 is not in \[0, 5\]"):
        load(too_big)


def test_einsum_shapes_implicit_output_and_flops():
    a, b = x_of(2, 3, 4), x_of(2, 4, 5)
    m = model("Einsum", [("a", FLOAT, a.shape), ("b", FLOAT, b.shape)], [("y", FLOAT)], 12,
              equation="...ij, ...jk")
    g = load(m)
    assert g.outputs[0].shape == (2, 3, 5)   # implicit: '...' first, then the letters used once, sorted
    assert ops.lookup(g.nodes[0]).flops(g.nodes[0]) == 2 * 2 * 3 * 4 * 5
    run_both(m, {"a": a, "b": b})


def test_einsum_rejects_mismatched_indices():
    m = model("Einsum", [("a", FLOAT, [2, 3]), ("b", FLOAT, [4, 5])], [("y", FLOAT)], 12, equation="ij,jk->ik")
    with pytest.raises(InvalidModelError, match="index 'j' has extents 3 and 4"):
        load(m)


def test_det_of_a_batch():
    x = x_of(3, 4, 4)
    m = model("Det", [("x", FLOAT, x.shape)], [("y", FLOAT)], 13)
    assert load(m).outputs[0].shape == (3,)
    run_both(m, {"x": x})
