"""Convolutions, pools, matrix products and quantization: N-D window geometry (auto_pad, ceil_mode, dilations,
groups), shape rules, FLOP counts and error messages, checked against onnxruntime where it implements the spec
(its u8s8 integer kernels saturate and it lacks per-channel ConvInteger zero points, so those compare with exact
integer arithmetic instead)."""

from __future__ import annotations

import time
from typing import Sequence

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import dnnfusion
from dnnfusion import ops
from dnnfusion.errors import InvalidModelError, ShapeError
from dnnfusion.pipeline import load
from dnnfusion.ops import MappingType
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.runtime import run_reference
from tests.helpers import one_node_model as model

FLOAT, INT64, UINT8, INT8, INT32 = (TensorProto.FLOAT, TensorProto.INT64, TensorProto.UINT8, TensorProto.INT8,
                                    TensorProto.INT32)
RNG = np.random.default_rng(7)


def one_node(op: str, feeds: dict[str, np.ndarray], outputs: Sequence[tuple[str, int]], opset: int = 22,
             initializers: dict[str, np.ndarray] | None = None, **attrs) -> onnx.ModelProto:
    """A one-node model whose graph inputs are typed and shaped after `feeds`."""
    inputs = [(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feeds.items()]
    return model(op, inputs, outputs, opset, initializers, **attrs)


def ours(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return run_reference(load(m, {k: v.shape for k, v in feeds.items()}), feeds)


def run_both(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our reference outputs, after asserting they match onnxruntime's."""
    got = ours(m, feeds)
    diffs = compare(got, run_onnxruntime(m, feeds))
    assert all(d.ok for d in diffs), diffs
    return got


def x_of(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# --- Conv ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((2, 4, 11), (6, 2, 3), dict(group=2, strides=[2], dilations=[2], pads=[2, 1])),
    ((1, 6, 7, 9), (6, 1, 3, 3), dict(group=6, pads=[1, 0, 2, 1])),                     # depthwise
    ((1, 3, 5, 6, 7), (4, 3, 3, 2, 3), dict(strides=[1, 2, 2], pads=[1, 0, 1, 1, 1, 0])),  # 3-D (C3D, S3D)
    ((1, 2, 8, 7), (3, 2, 3, 3), dict(auto_pad="SAME_LOWER", strides=[2, 3])),
    ((1, 2, 8, 7), (3, 2, 2, 2), dict(auto_pad="VALID", strides=[3, 2])),
])
def test_conv_matches_onnxruntime(x_shape, w_shape, attrs):
    feeds = {"x": x_of(*x_shape), "w": x_of(*w_shape), "b": x_of(w_shape[0])}
    run_both(one_node("Conv", feeds, [("y", FLOAT)], **attrs), feeds)


def test_conv_same_upper_and_lower_differ_only_in_where_the_odd_pad_goes():
    feeds = {"x": x_of(1, 1, 6, 6), "w": x_of(1, 1, 2, 2)}
    upper = load(one_node("Conv", feeds, [("y", FLOAT)], auto_pad="SAME_UPPER"), {"x": (1, 1, 6, 6), "w": (1, 1, 2, 2)})
    assert upper.outputs[0].shape == (1, 1, 6, 6)
    y_up = ours(one_node("Conv", feeds, [("y", FLOAT)], auto_pad="SAME_UPPER"), feeds)["y"]
    y_low = ours(one_node("Conv", feeds, [("y", FLOAT)], auto_pad="SAME_LOWER"), feeds)["y"]
    explicit = ours(one_node("Conv", feeds, [("y", FLOAT)], pads=[1, 1, 0, 0]), feeds)["y"]
    np.testing.assert_allclose(y_low, explicit, rtol=1e-6)
    assert not np.allclose(y_up, y_low)


def test_conv_flops_and_speed():
    x, w = x_of(1, 64, 56, 56), x_of(64, 64, 3, 3)
    m = one_node("Conv", {"x": x}, [("y", FLOAT)], initializers={"w": w}, pads=[1, 1, 1, 1])
    graph = load(m, {"x": x.shape})
    node = graph.nodes[0]
    assert ops.lookup(node).flops(node) == 2 * (64 * 56 * 56) * 64 * 9
    start = time.perf_counter()
    run_reference(graph, {"x": x})
    assert time.perf_counter() - start < 1.0


def test_conv_channel_mismatch_and_kernel_shape_errors():
    feeds = {"x": x_of(1, 4, 5, 5), "w": x_of(2, 3, 3, 3)}
    with pytest.raises(InvalidModelError, match="X has 4 channels and W shape .* group=1"):
        load(one_node("Conv", feeds, [("y", FLOAT)]), {k: v.shape for k, v in feeds.items()})
    feeds["w"] = x_of(2, 4, 3, 3)
    with pytest.raises(InvalidModelError, match=r"kernel_shape \[2, 2\] disagrees"):
        load(one_node("Conv", feeds, [("y", FLOAT)], kernel_shape=[2, 2]), {k: v.shape for k, v in feeds.items()})
    with pytest.raises(InvalidModelError, match="does not fit the input's spatial shape"):
        load(one_node("Conv", {"x": x_of(1, 4, 2, 2), "w": x_of(2, 4, 3, 3)}, [("y", FLOAT)]),
             {"x": (1, 4, 2, 2), "w": (2, 4, 3, 3)})


def test_conv_integer_per_channel_zero_point_is_exact():
    x = RNG.integers(0, 256, (1, 4, 6, 6)).astype(np.uint8)
    w = RNG.integers(0, 256, (6, 2, 3, 3)).astype(np.uint8)
    x_zero, w_zero = np.uint8(7), RNG.integers(0, 256, 6).astype(np.uint8)
    m = one_node("ConvInteger", {"x": x, "w": w}, [("y", INT32)],
                 initializers={"xz": np.array(x_zero), "wz": w_zero}, group=2, pads=[1, 1, 1, 1])
    y = ours(m, {"x": x, "w": w})["y"]
    xs, ws = x.astype(np.float32) - 7, w.astype(np.float32) - w_zero.reshape(6, 1, 1, 1).astype(np.float32)
    expected = ours(one_node("Conv", {"x": xs, "w": ws}, [("y", FLOAT)], group=2, pads=[1, 1, 1, 1]),
                    {"x": xs, "w": ws})["y"]
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, expected.astype(np.int32))


def test_deform_conv_with_zero_offsets_and_unit_mask_is_conv():
    x, w, b = x_of(1, 4, 6, 5), x_of(6, 2, 3, 2), x_of(6)
    conv = ours(one_node("Conv", {"x": x, "w": w, "b": b}, [("y", FLOAT)], group=2, pads=[1, 0, 1, 1]),
                {"x": x, "w": w, "b": b})["y"]
    offset = np.zeros((1, 2 * 6 * 2, *conv.shape[2:]), np.float32)
    mask = np.ones((1, 2 * 6, *conv.shape[2:]), np.float32)
    feeds = {"x": x, "w": w, "offset": offset, "b": b, "mask": mask}
    deform = ours(one_node("DeformConv", feeds, [("y", FLOAT)], opset=22, group=2, offset_group=2,
                           pads=[1, 0, 1, 1]), feeds)["y"]
    np.testing.assert_allclose(deform, conv, rtol=1e-5, atol=1e-5)


# --- ConvTranspose ------------------------------------------------------------------------------------

@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 4, 5, 4), (4, 3, 3, 3), dict(group=2, strides=[2, 3], pads=[1, 0, 0, 2], output_padding=[1, 2])),
    ((1, 2, 5, 5), (2, 3, 3, 3), dict(strides=[2, 2], output_shape=[12, 9])),
    ((1, 2, 5), (2, 2, 3), dict(strides=[2], dilations=[2], auto_pad="SAME_UPPER")),
    ((1, 2, 3, 4, 3), (2, 1, 2, 3, 2), dict(strides=[2, 1, 2])),
])
def test_conv_transpose_matches_onnxruntime(x_shape, w_shape, attrs):
    channels = w_shape[1] * attrs.get("group", 1)
    feeds = {"x": x_of(*x_shape), "w": x_of(*w_shape), "b": x_of(channels)}
    run_both(one_node("ConvTranspose", feeds, [("y", FLOAT)], **attrs), feeds)


# --- pools --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    dict(kernel_shape=[2, 3], strides=[2, 1], dilations=[2, 1], storage_order=1),
    dict(kernel_shape=[3, 2], auto_pad="SAME_LOWER", strides=[2, 2]),
])
def test_max_pool_with_indices_matches_onnxruntime(attrs):
    feeds = {"x": x_of(2, 3, 8, 7)}
    run_both(one_node("MaxPool", feeds, [("y", FLOAT), ("i", INT64)], **attrs), feeds)


def test_max_pool_uint8_pads_with_the_type_minimum():
    feeds = {"x": RNG.integers(0, 256, (1, 2, 5, 5)).astype(np.uint8)}
    run_both(one_node("MaxPool", feeds, [("y", UINT8)], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), feeds)


@pytest.mark.parametrize("include_pad", [0, 1])
def test_average_pool_counts_pads_only_when_asked(include_pad):
    feeds = {"x": x_of(1, 2, 7, 6, 5)}
    m = one_node("AveragePool", feeds, [("y", FLOAT)], kernel_shape=[3, 2, 3], strides=[2, 2, 2],
                 pads=[1, 1, 0, 1, 0, 2], ceil_mode=1, count_include_pad=include_pad)
    run_both(m, feeds)


def test_ceil_mode_drops_a_last_window_that_would_start_in_the_end_padding():
    m = one_node("MaxPool", {"x": x_of(1, 1, 4, 4)}, [("y", FLOAT)], kernel_shape=[1, 1], strides=[2, 2],
                 pads=[0, 0, 1, 1], ceil_mode=1)
    # floor mode gives 3 windows (starts 0, 2, 4), but start 4 lies in the end padding: 2 remain
    assert load(m, {"x": (1, 1, 4, 4)}).outputs[0].shape == (1, 1, 2, 2)


def test_same_auto_pad_pools_use_the_dilated_kernel():
    """The spec's pad_shape uses (kernel - 1) * dilation + 1 (onnxruntime's pools use the plain kernel)."""
    x = x_of(1, 1, 6)
    m = one_node("MaxPool", {"x": x}, [("y", FLOAT)], kernel_shape=[2], dilations=[2], auto_pad="SAME_UPPER")
    y = ours(m, {"x": x})["y"]
    padded = np.concatenate([[-np.inf], x[0, 0], [-np.inf]])    # total pad 2: one before, one after
    np.testing.assert_array_equal(y[0, 0], np.maximum(padded[:-2], padded[2:]))


def test_lp_and_global_pools_match_onnxruntime():
    feeds = {"x": x_of(2, 3, 6, 5)}
    run_both(one_node("LpPool", feeds, [("y", FLOAT)], kernel_shape=[3, 2], p=3, pads=[1, 0, 1, 1]), feeds)
    run_both(one_node("GlobalAveragePool", feeds, [("y", FLOAT)]), feeds)
    run_both(one_node("GlobalMaxPool", feeds, [("y", FLOAT)]), feeds)


def test_pool_without_kernel_shape_is_named():
    with pytest.raises(InvalidModelError, match="AveragePool node .* needs the kernel_shape attribute"):
        load(one_node("AveragePool", {"x": x_of(1, 1, 4, 4)}, [("y", FLOAT)]), {"x": (1, 1, 4, 4)})


def test_max_unpool_inverts_max_pool_and_takes_a_run_time_output_shape():
    x = x_of(1, 2, 4, 4)
    pool = ours(one_node("MaxPool", {"x": x}, [("y", FLOAT), ("i", INT64)], kernel_shape=[2, 2], strides=[2, 2]),
                {"x": x})
    feeds = {"y": pool["y"], "i": pool["i"], "shape": np.array([1, 2, 5, 5], np.int64)}
    m = one_node("MaxUnpool", feeds, [("z", FLOAT)], kernel_shape=[2, 2], strides=[2, 2])
    assert load(m, {k: v.shape for k, v in feeds.items()}).outputs[0].shape == (None, None, None, None)
    z = ours(m, feeds)["z"]
    assert z.shape == (1, 2, 5, 5)
    np.testing.assert_array_equal(z[..., :4, :4].max(axis=(2, 3)), x.max(axis=(2, 3)))
    assert np.count_nonzero(z) == 8


# --- MatMul, Gemm, MatMulInteger ----------------------------------------------------------------------

@pytest.mark.parametrize("a_shape, b_shape, y_shape", [
    ((3,), (3,), ()), ((3,), (2, 3, 4), (2, 4)), ((2, 1, 3, 4), (5, 4, 2), (2, 5, 3, 2)), ((4, 3), (3,), (4,)),
])
def test_matmul_shapes_follow_numpy(a_shape, b_shape, y_shape):
    feeds = {"a": x_of(*a_shape), "b": x_of(*b_shape)}
    m = one_node("MatMul", feeds, [("y", FLOAT)])
    graph = load(m, {k: v.shape for k, v in feeds.items()})
    assert graph.outputs[0].shape == y_shape
    node = graph.nodes[0]
    assert ops.lookup(node).flops(node) == 2 * int(np.prod(y_shape)) * a_shape[-1]
    run_both(m, feeds)


def test_matmul_inner_mismatch_and_gemm_bias_errors():
    with pytest.raises(InvalidModelError, match=r"inner dimensions differ: 3 in \(2, 3\) and 4 in \(4, 5\)"):
        load(one_node("MatMul", {"a": x_of(2, 3), "b": x_of(4, 5)}, [("y", FLOAT)]), {"a": (2, 3), "b": (4, 5)})
    feeds = {"a": x_of(4, 3), "b": x_of(3, 5), "c": x_of(4)}
    with pytest.raises(InvalidModelError, match=r"C of shape \(4,\) does not broadcast to the result \(4, 5\)"):
        load(one_node("Gemm", feeds, [("y", FLOAT)]), {k: v.shape for k, v in feeds.items()})


@pytest.mark.parametrize("c_shape", [None, (), (5,), (3, 1)])
def test_gemm_transposes_scales_and_broadcasts_c(c_shape):
    feeds = {"a": x_of(4, 3), "b": x_of(5, 4)}
    if c_shape is not None:
        feeds["c"] = x_of(*c_shape)
    run_both(one_node("Gemm", feeds, [("y", FLOAT)], transA=1, transB=1, alpha=0.5, beta=2.0), feeds)


def test_matmul_integer_per_row_and_per_column_zero_points_are_exact():
    a = RNG.integers(0, 256, (4, 6)).astype(np.uint8)
    b = RNG.integers(-128, 128, (6, 5)).astype(np.int8)
    a_zero, b_zero = RNG.integers(0, 256, 4).astype(np.uint8), RNG.integers(-128, 128, 5).astype(np.int8)
    feeds = {"a": a, "b": b, "az": a_zero, "bz": b_zero}
    y = ours(one_node("MatMulInteger", feeds, [("y", INT32)]), feeds)["y"]
    expected = (a.astype(np.int64) - a_zero[:, None]) @ (b.astype(np.int64) - b_zero)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, expected)


# --- quantization -------------------------------------------------------------------------------------

def test_mapping_types():
    assert ops.get("QuantizeLinear").mapping is MappingType.ONE_TO_ONE
    assert ops.get("DequantizeLinear").mapping is MappingType.ONE_TO_ONE
    for op in ("QLinearConv", "QLinearMatMul", "Conv", "ConvTranspose", "MatMul", "Gemm", "MaxPool"):
        assert ops.get(op).mapping is MappingType.MANY_TO_MANY
    assert ops.get("MatMul").algebra.associative


@pytest.mark.parametrize("scale_shape, attrs", [((3,), dict(axis=1)), ((2, 3, 2), dict(axis=2, block_size=2)),
                                                ((2, 2, 4), dict(axis=1, block_size=2))])
def test_quantize_round_trip_matches_onnxruntime(scale_shape, attrs):
    x = x_of(2, 3, 4) * 20
    params = {"s": (RNG.random(scale_shape) + 0.1).astype(np.float32),
              "z": RNG.integers(-5, 5, scale_shape).astype(np.int8)}
    q = run_both(one_node("QuantizeLinear", {"x": x}, [("y", INT8)], 21, params, **attrs), {"x": x})["y"]
    assert q.dtype == np.int8
    run_both(one_node("DequantizeLinear", {"q": q}, [("y", FLOAT)], 21, params, **attrs), {"q": q})


def test_blocked_scale_of_the_wrong_shape_is_named():
    m = one_node("QuantizeLinear", {"x": x_of(2, 6)}, [("y", UINT8)], 21,
                 {"s": np.ones((2, 2), np.float32)}, axis=1, block_size=2)
    with pytest.raises(InvalidModelError, match=r"block_size 2 must have shape \(2, 3\), not \(2, 2\)"):
        load(m, {"x": (2, 6)})


def test_quantize_saturates_float8_only_when_asked():
    x = np.array([1.0, 1000.0, -np.inf, np.nan], np.float32)
    zero = {"s": np.array(2.0, np.float32), "z": np.zeros((), ml_dtypes.float8_e4m3fn)}
    saturated = ours(one_node("QuantizeLinear", {"x": x}, [("y", TensorProto.FLOAT8E4M3FN)], 21, zero), {"x": x})["y"]
    wrapped = ours(one_node("QuantizeLinear", {"x": x}, [("y", TensorProto.FLOAT8E4M3FN)], 21, zero, saturate=0),
                   {"x": x})["y"]
    np.testing.assert_array_equal(saturated.astype(np.float32), [0.5, 448, -448, np.nan])
    assert np.isnan(wrapped.astype(np.float32)[1:]).all()


def test_quantize_to_int4_with_output_dtype_and_no_zero_point():
    x = np.array([-20.0, -3.4, 0.5, 1.5, 2.5, 30.0], np.float32)
    m = one_node("QuantizeLinear", {"x": x}, [("y", TensorProto.INT4)], 21, {"s": np.array(1.0, np.float32)},
                 output_dtype=TensorProto.INT4)
    y = ours(m, {"x": x})["y"]
    assert y.dtype == ml_dtypes.int4
    np.testing.assert_array_equal(y.astype(np.int8), [-8, -3, 0, 2, 2, 7])   # round half to even, then saturate


def test_dequantize_output_dtype_overrides_the_scale_type():
    q = RNG.integers(0, 256, (3, 4)).astype(np.uint8)
    m = one_node("DequantizeLinear", {"q": q}, [("y", TensorProto.FLOAT16)], 23,
                 {"s": np.array(0.5, np.float32), "z": np.array(3, np.uint8)}, output_dtype=TensorProto.FLOAT16)
    y = ours(m, {"q": q})["y"]
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, ((q.astype(np.float32) - 3) * 0.5).astype(np.float16))


def test_dynamic_quantize_matches_onnxruntime():
    feeds = {"x": x_of(3, 7) * 4}
    run_both(one_node("DynamicQuantizeLinear", feeds, [("y", UINT8), ("s", FLOAT), ("z", UINT8)]), feeds)


def test_qlinear_matmul_matches_onnxruntime():
    a, b = RNG.integers(0, 256, (2, 4, 6)).astype(np.uint8), RNG.integers(0, 256, (6, 5)).astype(np.uint8)
    params = {"as": np.array(0.02, np.float32), "az": np.array(100, np.uint8), "b": b,
              "bs": np.array(0.03, np.float32), "bz": np.array(120, np.uint8),
              "ys": np.array(0.5, np.float32), "yz": np.array(128, np.uint8)}
    inputs = [("a", UINT8, a.shape)]
    names = ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]
    node = helper.make_node("QLinearMatMul", names, ["y"])
    graph = helper.make_graph([node], "t", [helper.make_tensor_value_info(*i) for i in inputs],
                              [helper.make_tensor_value_info("y", UINT8, None)],
                              [numpy_helper.from_array(v, k) for k, v in params.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    assert run_both(m, {"a": a})["y"].shape == (2, 4, 5)


def test_qlinear_conv_per_channel_matches_onnxruntime():
    x = RNG.integers(0, 256, (1, 4, 6, 6)).astype(np.uint8)
    w = RNG.integers(-60, 60, (6, 2, 3, 3)).astype(np.int8)    # small enough for onnxruntime's u8s8 kernel
    params = {"xs": np.array(0.02, np.float32), "xz": np.array(100, np.uint8), "w": w,
              "ws": (RNG.random(6) * 0.05).astype(np.float32), "wz": np.zeros(6, np.int8),
              "ys": np.array(0.7, np.float32), "yz": np.array(128, np.uint8),
              "b": RNG.integers(-1000, 1000, 6).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", *params], ["y"], group=2, pads=[1, 1, 1, 1], strides=[2, 2])
    graph = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", UINT8, x.shape)],
                              [helper.make_tensor_value_info("y", UINT8, None)],
                              [numpy_helper.from_array(v, k) for k, v in params.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    assert run_both(m, {"x": x})["y"].shape == (1, 6, 3, 3)


def test_conv_weights_from_a_graph_input_need_no_constant():
    feeds = {"x": x_of(1, 2, 4, 4), "w": x_of(3, 2, 1, 1)}
    graph = load(one_node("Conv", feeds, [("y", FLOAT)]), {k: v.shape for k, v in feeds.items()})
    assert graph.outputs[0].shape == (1, 3, 4, 4)


def test_max_unpool_needs_kernel_shape():
    feeds = {"y": x_of(1, 1, 2, 2), "i": np.zeros((1, 1, 2, 2), np.int64)}
    with pytest.raises((InvalidModelError, ShapeError), match="kernel_shape"):
        load(one_node("MaxUnpool", feeds, [("z", FLOAT)]), {k: v.shape for k, v in feeds.items()})


def test_same_upper_dilated_max_pool_on_one_pixel_follows_the_spec_not_onnxruntime():
    """kernel 2, dilation 2, SAME_UPPER over one pixel: ceil(1 / 1) = 1 output, as ONNX shape inference and the
    reference evaluator say; onnxruntime 1.2x gives an empty output (found by the fuzzer, an onnxruntime bug).
    Both taps land in the padding, so the window holds no input: its maximum is -inf, max's identity (the
    reference evaluator gives NaN, the spec says nothing)."""
    model = helper.make_model(helper.make_graph(
        [helper.make_node("MaxPool", ["x"], ["y"], auto_pad="SAME_UPPER", dilations=[2], kernel_shape=[2])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 20)])
    x = np.array([[[0.75]]], np.float32)
    assert ReferenceEvaluator(model).run(None, {"x": x})[0].shape == (1, 1, 1)
    for level in ("O0", "O3"):
        np.testing.assert_array_equal(dnnfusion.compile(model, opt_level=level).run({"x": x})["y"], [[[-np.inf]]])
