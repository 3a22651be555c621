"""Generated code for the matrix products, convolutions and pools, fused with their neighbours: compiled
models against onnxruntime, with no fallbacks and the planned number of blocks."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dnnfusion
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.kernels.pool import FIRST_AXIS_NOTE

FLOAT = TensorProto.FLOAT
RNG = np.random.default_rng(5)


def floats(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def model(nodes: Sequence[onnx.NodeProto], feeds: dict[str, np.ndarray], weights: dict[str, np.ndarray] | None = None,
          output_type: int = FLOAT, opset: int = 19) -> onnx.ModelProto:
    """A model computing output 'y' from graph inputs named after `feeds` and initializers `weights`."""
    graph = helper.make_graph(
        list(nodes), "t",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info("y", output_type, None)],
        [numpy_helper.from_array(a, k) for k, a in (weights or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def check(m: onnx.ModelProto, feeds: dict[str, np.ndarray], blocks: int | None = 1) -> dnnfusion.CompiledModel:
    """Compile, compare with onnxruntime (rtol 1e-3, atol 1e-4), and check fallbacks and block count."""
    compiled = dnnfusion.compile(m)
    diffs = compare(compiled.run(feeds), run_onnxruntime(m, feeds))
    assert diffs and all(d.ok for d in diffs), diffs
    assert compiled.stats["fallback_ops"] == []
    if blocks is not None:
        assert compiled.stats["blocks"] == blocks
    return compiled


def node(op: str, inputs: Sequence[str], output: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, list(inputs), [output], **attrs)


# --- MatMul / Gemm --------------------------------------------------------------------------------------

@pytest.mark.parametrize("a_shape, b_shape", [
    ((13, 24), (24, 37)),            # edge tiles on both axes
    ((2, 3, 7, 16), (16, 20)),       # batched A, weight B
    ((2, 1, 5, 9), (3, 9, 17)),      # broadcast batch axes
    ((9,), (2, 9, 6)),               # 1-D A
    ((4, 6, 9), (9,)),               # 1-D B
    ((1, 40), (40, 1)),              # a single dot product
    ((40, 300), (300, 256)),         # B copied into column panels (its 1 KiB rows would alias in the cache)
])
def test_matmul_with_prologue_and_epilogue_is_one_block(a_shape, b_shape):
    a, w = floats(*a_shape), floats(*b_shape)
    bias = floats(*np.matmul(a, w).shape[-1:])
    nodes = [node("Relu", ["a"], "ra"), node("MatMul", ["ra", "w"], "mm"), node("Add", ["mm", "bias"], "s"),
             node("Relu", ["s"], "y")]
    check(model(nodes, {"a": a}, {"w": w, "bias": bias}), {"a": a})


def test_matmul_of_two_inputs_with_a_fused_transpose():
    q, k = floats(2, 3, 10, 8), floats(2, 3, 12, 8)
    nodes = [node("Transpose", ["k"], "kt", perm=[0, 1, 3, 2]), node("MatMul", ["q", "kt"], "s"),
             node("Mul", ["s", "scale"], "y")]
    check(model(nodes, {"q": q, "k": k}, {"scale": np.array(0.35, np.float32)}), {"q": q, "k": k})


@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("c_shape", [None, (), (11,), (7, 1), (7, 11)])
def test_gemm_transposes_scales_and_bias_broadcast(trans_a, trans_b, c_shape):
    a, b = floats(*((9, 7) if trans_a else (7, 9))), floats(*((11, 9) if trans_b else (9, 11)))
    weights = {"b": b} if c_shape is None else {"b": b, "c": floats(*c_shape)}
    nodes = [node("Gemm", ["a", *weights], "g", transA=trans_a, transB=trans_b, alpha=0.5, beta=1.5),
             node("Relu", ["g"], "y")]
    check(model(nodes, {"a": a}, weights), {"a": a})


def test_gemm_with_a_large_transposed_weight_and_a_fused_producer_of_b():
    a, w, b = floats(40, 70), floats(100, 70), floats(70, 256)
    gemm = model([node("Gemm", ["a", "w"], "g", transB=1), node("Relu", ["g"], "y")], {"a": a}, {"w": w})
    check(gemm, {"a": a})
    matmul = model([node("Relu", ["b"], "rb"), node("MatMul", ["a", "rb"], "y")], {"a": a, "b": b})
    check(matmul, {"a": a, "b": b})


def test_matmul_of_doubles_and_integers():
    for dtype, elem in ((np.float64, TensorProto.DOUBLE), (np.int32, TensorProto.INT32)):
        a, b = (floats(3, 7, 9) * 5).astype(dtype), (floats(9, 20) * 5).astype(dtype)
        check(model([node("MatMul", ["a", "b"], "y")], {"a": a, "b": b}, output_type=elem), {"a": a, "b": b})


def test_matmul_integer_with_zero_points():
    a = RNG.integers(0, 255, (5, 6), dtype=np.uint8)
    b = RNG.integers(0, 255, (6, 7), dtype=np.uint8)
    weights = {"b": b, "az": np.array(12, np.uint8), "bz": RNG.integers(0, 255, (7,), dtype=np.uint8)}
    m = model([node("MatMulInteger", ["a", "b", "az", "bz"], "y")], {"a": a}, weights, TensorProto.INT32)
    check(m, {"a": a})


# --- convolutions -----------------------------------------------------------------------------------------

def test_conv_with_batchnorm_style_scale_shift_and_relu_is_one_block():
    x, w, b = floats(2, 3, 11, 10), floats(8, 3, 3, 3), floats(8)
    weights = {"w": w, "b": b, "scale": floats(8, 1, 1), "shift": floats(8, 1, 1)}
    nodes = [node("Conv", ["x", "w", "b"], "c", pads=[1, 1, 1, 1], strides=[2, 1]),
             node("Mul", ["c", "scale"], "m"), node("Add", ["m", "shift"], "s"), node("Relu", ["s"], "y")]
    check(model(nodes, {"x": x}, weights), {"x": x})


def test_pointwise_conv_with_residual_add():
    x, w = floats(1, 16, 6, 7), floats(16, 16, 1, 1)
    nodes = [node("Conv", ["x", "w"], "c"), node("Add", ["c", "x"], "s"), node("Relu", ["s"], "y")]
    check(model(nodes, {"x": x}, {"w": w}), {"x": x})


def test_depthwise_conv_with_a_fused_producer():
    x, w, b = floats(2, 6, 9, 9), floats(6, 1, 3, 3), floats(6)
    nodes = [node("Relu", ["x"], "r"), node("Conv", ["r", "w", "b"], "c", group=6, strides=[2, 2], pads=[1, 1, 1, 1]),
             node("Clip", ["c", "lo", "hi"], "y")]
    weights = {"w": w, "b": b, "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    check(model(nodes, {"x": x}, weights), {"x": x})


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((2, 4, 17), (6, 2, 3), dict(group=2, dilations=[2], pads=[2, 1])),
    ((1, 6, 9, 8), (9, 2, 3, 2), dict(group=3, strides=[2, 1], auto_pad="SAME_UPPER")),
    ((1, 4, 9, 8), (8, 4, 3, 3), dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    ((1, 2, 7, 6, 5), (4, 2, 3, 2, 3), dict(strides=[1, 2, 1], pads=[1, 0, 1, 1, 1, 0])),
    ((1, 3, 8, 8), (2, 3, 3, 3), dict(auto_pad="VALID", dilations=[2, 2])),
])
def test_conv_geometry(x_shape, w_shape, attrs):
    x, w = floats(*x_shape), floats(*w_shape)
    check(model([node("Conv", ["x", "w", "b"], "y", **attrs)], {"x": x}, {"w": w, "b": floats(w_shape[0])}),
          {"x": x})


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 4, 5, 6), (4, 3, 3, 3), dict(group=2, strides=[2, 2], pads=[1, 0, 1, 1], output_padding=[1, 1])),
    ((2, 3, 7), (3, 2, 3), dict(strides=[3], dilations=[2])),
    ((1, 2, 3, 4, 3), (2, 2, 2, 2, 2), dict(strides=[2, 1, 2])),
    ((1, 2, 4, 4), (2, 3, 3, 3), dict(strides=[2, 2], output_shape=[9, 9])),
    ((1, 8, 5, 6), (8, 4, 2, 2), dict(strides=[2, 2])),                  # disjoint taps (stride = kernel)
    ((2, 6, 3, 4), (6, 2, 3, 2), dict(group=3, strides=[3, 2])),
    ((1, 4, 5), (4, 3, 2), dict(strides=[2])),
    ((1, 4, 5, 6), (4, 3, 2, 2), dict(strides=[2, 2], pads=[1, 0, 0, 1])),  # cropped: overlapping path
])
def test_conv_transpose(x_shape, w_shape, attrs):
    x, w = floats(*x_shape), floats(*w_shape)
    nodes = [node("ConvTranspose", ["x", "w", "b"], "c", **attrs), node("Relu", ["c"], "y")]
    check(model(nodes, {"x": x}, {"w": w, "b": floats(w_shape[1] * attrs.get("group", 1))}), {"x": x})


# --- pools ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op, attrs", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 2], dilations=[2, 1], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[2, 3], strides=[3, 2], pads=[1, 0, 0, 1], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    ("LpPool", dict(kernel_shape=[2, 2], strides=[2, 1], pads=[1, 0, 0, 1], p=3)),
])
def test_strided_padded_pool_between_pointwise_ops(op, attrs):
    x = floats(2, 3, 9, 10)
    nodes = [node("Neg", ["x"], "n"), node(op, ["n"], "p", **attrs), node("Sigmoid", ["p"], "y")]
    check(model(nodes, {"x": x}), {"x": x})


@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[3, 3, 3], strides=[1, 1, 1], pads=[1, 1, 1, 1, 1, 1]),      # S3D's
    dict(kernel_shape=[2, 3, 3], strides=[2, 2, 2], pads=[0, 1, 1, 1, 0, 1]),
    dict(kernel_shape=[3, 2, 2], strides=[2, 1, 2], dilations=[2, 1, 1], ceil_mode=1),
])
def test_3d_max_pools_fold_their_frames_first(attrs):
    """A 3-D max pool folds each output frame's input frames into a plane, then its 2-D window over it:
    padding frames, strides, dilation, ceil_mode, a fused epilogue (through a fused producer: one stage)."""
    x = floats(2, 3, 7, 9, 10)
    nodes = [node("MaxPool", ["x"], "p", **attrs), node("Sigmoid", ["p"], "y")]
    compiled = check(model(nodes, {"x": x}), {"x": x})
    assert FIRST_AXIS_NOTE in compiled.source
    fused = check(model([node("Neg", ["x"], "n"), node("MaxPool", ["n"], "y", **attrs)], {"x": x}), {"x": x},
                  blocks=None)
    assert (FIRST_AXIS_NOTE in fused.source) == (fused.stats["blocks"] == 2)    # through a fused Neg: one stage


@pytest.mark.parametrize("kernel, pads", [(9, 4), (13, 6), (8, 3)])
def test_max_pools_beyond_a_plane_kernels_taps_fold_rows_first(kernel, pads):
    """YOLOv4's spatial pyramid pools (9 x 9 and 13 x 13, stride 1, 'same' pads over 13 x 13): too many taps
    for one plane kernel, the rows' maxima first, then the columns'; an even kernel with uneven output."""
    x = floats(1, 8, 13, 13)
    m = model([node("MaxPool", ["x"], "y", kernel_shape=[kernel, kernel], pads=[pads] * 4)], {"x": x})
    assert FIRST_AXIS_NOTE in check(m, {"x": x}).source


@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[1, 2, 2], strides=[1, 2, 2]),                                   # C3D's first
    dict(kernel_shape=[1, 3, 3], strides=[2, 2, 2], pads=[0, 1, 1, 0, 1, 1]),          # S3D's, every other frame
])
def test_3d_max_pools_within_a_frame_run_frame_by_frame(attrs):
    """A 1 x k x k pool runs a 2-D plane per (channel, frame), through a fused producer and epilogue, the
    output frames placed back in the volume."""
    x = floats(2, 3, 5, 11, 10)
    nodes = [node("Neg", ["x"], "n"), node("MaxPool", ["n"], "p", **attrs), node("Sigmoid", ["p"], "y")]
    check(model(nodes, {"x": x}), {"x": x}, blocks=None)


def test_3d_max_pool_frames_keep_a_nan():
    """A NaN wins every window it is in, after the frame stage as in numpy's max (the reference)."""
    x = floats(1, 2, 5, 6, 6)
    x[0, 1, 2, 3, 3] = np.nan
    m = model([node("MaxPool", ["x"], "y", kernel_shape=[3, 3, 3], pads=[1] * 6)], {"x": x})
    got = dnnfusion.compile(m).run({"x": x})["y"]
    assert np.isnan(got[0, 1, 1:4, 2:5, 2:5]).all() and np.isnan(got).sum() == 27 and not np.isnan(got[0, 0]).any()


def test_maxpool_of_uint8():
    x = RNG.integers(0, 255, (1, 2, 7, 7), dtype=np.uint8)
    m = model([node("MaxPool", ["x"], "y", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {"x": x},
              output_type=TensorProto.UINT8)
    check(m, {"x": x})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool_after_conv_block(op):
    x, w = floats(2, 3, 8, 8), floats(8, 3, 3, 3)
    nodes = [node("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]), node("Relu", ["c"], "r"), node(op, ["r"], "g"),
             node("Flatten", ["g"], "y")]
    check(model(nodes, {"x": x}, {"w": w}), {"x": x}, blocks=2)


def test_maxpool_with_indices_falls_back():
    x = floats(1, 1, 4, 4)
    graph = helper.make_graph([helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])], "t",
                              [helper.make_tensor_value_info("x", FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", FLOAT, None),
                               helper.make_tensor_value_info("i", TensorProto.INT64, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    compiled = dnnfusion.compile(m)
    assert [op.split(" ")[0] for op in compiled.stats["fallback_ops"]] == ["MaxPool"]
    diffs = compare(compiled.run({"x": x}), run_onnxruntime(m, {"x": x}))
    assert all(d.ok for d in diffs), diffs


@pytest.mark.parametrize("spatial, group", [((19, 19), 1), ((12, 20), 2)])
def test_pointwise_conv_applies_its_fused_producers_as_it_packs(spatial, group):
    """A 1x1 convolution whose input comes through fused producers (a Clip, then a per-channel scale) reads
    them while packing its columns: one pass over the input, no copy of it beforehand."""
    x, scale = floats(1, 32, *spatial), floats(1, 32, 1, 1)
    weights = {"w": floats(48, 32 // group, 1, 1) * 0.2, "b": floats(48), "lo": np.array(0, np.float32),
               "hi": np.array(6, np.float32)}
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["c"]), helper.make_node("Mul", ["c", "s"], ["m"]),
             helper.make_node("Conv", ["m", "w", "b"], ["y"], group=group)]
    compiled = check(model(nodes, {"x": x, "s": scale}, weights), {"x": x, "s": scale})
    assert "kscratch0" in compiled.source and "kscratch1" not in compiled.source     # the packed columns only
