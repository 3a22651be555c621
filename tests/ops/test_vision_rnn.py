"""Resize/Upsample, NonMaxSuppression/RoiAlign, RNN/GRU/LSTM, GridSample/AffineGrid and the random generators:
static and data-dependent shape rules, opset-dependent defaults and error messages, checked against
onnxruntime where it follows the spec (it rejects layout=1 recurrences, so that is checked by transposition)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dnnfusion import ops
from dnnfusion.errors import InvalidModelError, UnsupportedOperatorError
from dnnfusion.pipeline import load
from dnnfusion.ops import MappingType
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.runtime import run_reference

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64
RNG = np.random.default_rng(11)


def one_node(op: str, inputs: Sequence[str], feeds: dict[str, np.ndarray], outputs: Sequence[tuple[str, int]],
             opset: int, initializers: dict[str, np.ndarray] | None = None, **attrs) -> onnx.ModelProto:
    """A one-node model: `inputs` names the node's inputs ('' for omitted ones), graph inputs follow `feeds`."""
    node = helper.make_node(op, list(inputs), [n for n, _ in outputs], **attrs)
    graph = helper.make_graph(
        [node], "t", [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                      for k, v in feeds.items()],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs if n],
        [numpy_helper.from_array(a, k) for k, a in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def ours(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return run_reference(load(m), feeds)


def run_both(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our reference outputs, after asserting they match onnxruntime's."""
    got = ours(m, feeds)
    diffs = compare(got, run_onnxruntime(m, feeds))
    assert diffs and all(d.ok for d in diffs), diffs
    return got


def floats(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# --- Resize / Upsample -----------------------------------------------------------------------------

def test_resize_shape_is_static_from_constant_scales_and_sizes():
    x = floats(1, 2, 5, 7)
    m = one_node("Resize", ["x", "", "scales"], {"x": x}, [("y", FLOAT)], 19,
                 {"scales": np.array([1, 1, 0.6, 1.7], np.float32)}, mode="linear")
    assert load(m).outputs[0].shape == (1, 2, 3, 11)          # floor(5 * 0.6), floor(7 * 1.7)
    run_both(m, {"x": x})
    m = one_node("Resize", ["x", "", "", "sizes"], {"x": x}, [("y", FLOAT)], 18,
                 {"sizes": np.array([9, 4], np.int64)}, mode="cubic", axes=[3, 2],
                 keep_aspect_ratio_policy="not_larger")
    assert load(m).outputs[0].shape == (1, 2, 4, 6)           # one scale, min(4/5, 9/7), for both axes
    run_both(m, {"x": x})


def test_resize_extents_are_data_dependent_when_sizes_are_a_graph_input():
    x, sizes = floats(1, 1, 4, 4), np.array([3, 6], np.int64)
    m = one_node("Resize", ["x", "", "", "sizes"], {"x": x, "sizes": sizes}, [("y", FLOAT)], 18,
                 mode="nearest", axes=[2, 3])
    assert load(m).outputs[0].shape == (1, 1, None, None)
    assert ours(m, {"x": x, "sizes": sizes})["y"].shape == (1, 1, 3, 6)


def test_resize_legacy_versions_match_onnxruntime():
    """Resize-10 and Upsample use asymmetric coordinates and floor (upsampling) or ceil (downsampling)."""
    x = floats(1, 2, 5, 7)
    for mode in ("nearest", "linear"):
        run_both(one_node("Resize", ["x", "scales"], {"x": x}, [("y", FLOAT)], 10,
                          {"scales": np.array([1, 1, 0.6, 1.7], np.float32)}, mode=mode), {"x": x})
        run_both(one_node("Upsample", ["x", "scales"], {"x": x}, [("y", FLOAT)], 9,
                          {"scales": np.array([1, 1, 1.5, 2.5], np.float32)}, mode=mode), {"x": x})
        run_both(one_node("Upsample", ["x"], {"x": x}, [("y", FLOAT)], 7, mode=mode, scales=[1.0, 1.0, 2.0, 3.0]),
                 {"x": x})


def test_resize_antialias_and_crop_match_onnxruntime():
    x = floats(2, 3, 9, 8)
    for mode in ("linear", "cubic"):
        run_both(one_node("Resize", ["x", "", "", "sizes"], {"x": x}, [("y", FLOAT)], 18,
                          {"sizes": np.array([2, 3, 4, 3], np.int64)}, mode=mode, antialias=1), {"x": x})
    run_both(one_node("Resize", ["x", "roi", "", "sizes"], {"x": x}, [("y", FLOAT)], 13,
                      {"roi": np.array([0, 0, 0.1, 0.3, 1, 1, 0.8, 1.2], np.float32),
                       "sizes": np.array([2, 3, 5, 6], np.int64)},
                      mode="linear", coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-7.0),
             {"x": x})


def test_resize_nearest_is_not_decided_by_float32_rounding():
    """The centre of a 5x7 image is pixel (2, 3) exactly; 1/7 in float32 must not move it to column 2."""
    x = np.arange(35, dtype=np.float32).reshape(1, 1, 5, 7)
    m = one_node("Resize", ["x", "", "", "sizes"], {"x": x}, [("y", FLOAT)], 19,
                 {"sizes": np.array([1, 1, 1, 1], np.int64)}, mode="nearest", nearest_mode="floor")
    assert ours(m, {"x": x})["y"].item() == 17


def test_resize_errors_name_the_problem():
    x = floats(1, 1, 4, 4)
    both = one_node("Resize", ["x", "", "scales", "sizes"], {"x": x}, [("y", FLOAT)], 13,
                    {"scales": np.ones(4, np.float32), "sizes": np.array([1, 1, 8, 8], np.int64)})
    with pytest.raises(InvalidModelError, match="exactly one of 'scales' and 'sizes'"):
        load(both)
    bad_mode = one_node("Resize", ["x", "", "scales"], {"x": x}, [("y", FLOAT)], 13,
                        {"scales": np.ones(4, np.float32)}, mode="area")
    with pytest.raises(UnsupportedOperatorError, match="mode='area'"):
        load(bad_mode)
    short = one_node("Resize", ["x", "", "scales"], {"x": x}, [("y", FLOAT)], 13, {"scales": np.ones(3, np.float32)})
    with pytest.raises(InvalidModelError, match="3 scales for 4 axes"):
        load(short)


# --- NonMaxSuppression / RoiAlign ------------------------------------------------------------------

@pytest.mark.parametrize("center_point_box", [0, 1])
def test_nms_has_a_data_dependent_count_and_matches_onnxruntime(center_point_box):
    corner = RNG.uniform(0, 10, (2, 30, 2))
    boxes = np.concatenate([corner, RNG.uniform(0.5, 4, (2, 30, 2)) + (0 if center_point_box else corner)], -1)
    scores = RNG.random((2, 3, 30)).astype(np.float32)
    scores[..., :4] = 0.5                                         # ties go to the lower box index
    feeds = {"boxes": boxes.astype(np.float32), "scores": scores}
    m = one_node("NonMaxSuppression", ["boxes", "scores", "limit", "iou", "score"], feeds, [("sel", INT64)], 11,
                 {"limit": np.array([5], np.int64), "iou": np.array([0.3], np.float32),
                  "score": np.array([0.2], np.float32)}, center_point_box=center_point_box)
    assert load(m).outputs[0].shape == (None, 3)
    assert run_both(m, feeds)["sel"].shape[1] == 3


def test_roi_align_defaults_depend_on_opset_and_match_onnxruntime():
    x = floats(2, 3, 10, 12)
    rois = np.array([[1, 1, 6, 5], [-2, 0.5, 4, 9], [3, 2, 3.2, 2.1]], np.float32)
    feeds = {"x": x, "rois": rois, "idx": np.array([0, 1, 1], np.int64)}
    outputs = {}
    for opset in (10, 16):                 # output_half_pixel before opset 16, half_pixel from it
        for mode in ("avg", "max"):
            m = one_node("RoiAlign", ["x", "rois", "idx"], feeds, [("y", FLOAT)], opset, mode=mode,
                         output_height=3, output_width=2, spatial_scale=0.5)
            assert load(m).outputs[0].shape == (3, 3, 3, 2)
            outputs[opset, mode] = run_both(m, feeds)["y"]
    assert not np.allclose(outputs[10, "avg"], outputs[16, "avg"])


def test_roi_align_rejects_bad_batch_index():
    feeds = {"x": floats(1, 1, 4, 4), "rois": np.array([[0, 0, 2, 2]], np.float32), "idx": np.array([3], np.int64)}
    m = one_node("RoiAlign", ["x", "rois", "idx"], feeds, [("y", FLOAT)], 16)
    with pytest.raises(InvalidModelError, match="batch index 3 of roi 0"):
        ours(m, feeds)


# --- RNN / GRU / LSTM --------------------------------------------------------------------------------

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def recurrent(op: str, seq: int, batch: int, size: int, hidden: int, directions: int, layout: int = 0,
              lens: np.ndarray | None = None, **attrs) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A recurrent layer with random weights, biases and initial states; X is the only graph input."""
    g = GATES[op]
    x = floats(*((batch, seq, size) if layout else (seq, batch, size)))
    state = (batch, directions, hidden) if layout else (directions, batch, hidden)
    inits = {"W": floats(directions, g * hidden, size) * 0.5, "R": floats(directions, g * hidden, hidden) * 0.5,
             "B": floats(directions, 2 * g * hidden), "L": lens if lens is not None else np.full(batch, seq, np.int32),
             "h0": floats(*state)}
    names = ["x", "W", "R", "B", "L", "h0"]
    outputs = [("Y", FLOAT), ("Y_h", FLOAT)]
    if op == "LSTM":
        inits.update(c0=floats(*state), P=floats(directions, 3 * hidden))
        names += ["c0", "P"]
        outputs.append(("Y_c", FLOAT))
    direction = "bidirectional" if directions == 2 else attrs.pop("direction", "forward")
    m = one_node(op, names, {"x": x}, outputs, 14, inits, hidden_size=hidden, direction=direction, layout=layout,
                 **attrs)
    return m, {"x": x}


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_recurrent_layers_match_onnxruntime(op):
    extra = {"GRU": {"linear_before_reset": 0}, "LSTM": {"clip": 2.0}, "RNN": {
        "activations": ["LeakyRelu", "HardSigmoid"], "activation_alpha": [0.2, 0.3], "activation_beta": [0.6]}}[op]
    m, feeds = recurrent(op, 5, 3, 4, 3, 2, lens=np.array([5, 2, 1], np.int32), **extra)
    got = run_both(m, feeds)
    assert got["Y"].shape == (5, 2, 3, 3) and got["Y_h"].shape == (2, 3, 3)
    assert not got["Y"][2:, :, 1].any()                 # steps past a sequence's length are zero
    m, feeds = recurrent(op, 4, 2, 3, 2, 1, direction="reverse")
    run_both(m, feeds)


def test_lstm_batch_first_layout_is_the_transposed_computation():
    m1, feeds = recurrent("LSTM", 4, 3, 2, 5, 2, layout=1)
    got = ours(m1, feeds)
    assert got["Y"].shape == (3, 4, 2, 5) and got["Y_h"].shape == (3, 2, 5)
    inits = {t.name: numpy_helper.to_array(t) for t in m1.graph.initializer}
    inits.update(h0=inits["h0"].transpose(1, 0, 2), c0=inits["c0"].transpose(1, 0, 2))
    x0 = feeds["x"].transpose(1, 0, 2)
    m0 = one_node("LSTM", ["x", "W", "R", "B", "L", "h0", "c0", "P"], {"x": x0},
                  [("Y", FLOAT), ("Y_h", FLOAT), ("Y_c", FLOAT)], 14, inits, hidden_size=5, direction="bidirectional")
    want = run_both(m0, {"x": x0})
    np.testing.assert_allclose(got["Y"], want["Y"].transpose(2, 0, 1, 3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["Y_c"], want["Y_c"].transpose(1, 0, 2), rtol=1e-5, atol=1e-6)


def test_recurrent_errors_and_flops():
    m, _ = recurrent("GRU", 3, 2, 4, 5, 1, activations=["Sigmoid", "Swish"])
    with pytest.raises(UnsupportedOperatorError, match="activation 'Swish'"):
        load(m)
    m, _ = recurrent("RNN", 3, 2, 4, 5, 1, direction="sideways")
    with pytest.raises(InvalidModelError, match="direction must be one of"):
        load(m)
    m, feeds = recurrent("GRU", 3, 2, 4, 5, 1)
    m.graph.initializer[4].CopyFrom(numpy_helper.from_array(floats(1, 1, 5), "h0"))   # batch 1 would broadcast
    with pytest.raises(InvalidModelError, match=r"input 5 \('h0'\) has shape \(1, 1, 5\), not \(1, 2, 5\)"):
        load(m)
    m, _ = recurrent("LSTM", 3, 2, 4, 5, 2)
    graph = load(m)
    node = graph.nodes[0]
    assert ops.lookup(node).flops(node) == 2 * 3 * 2 * (4 * 5) * (4 + 5) * 2
    assert ops.lookup(node).mapping is MappingType.MANY_TO_MANY


# --- GridSample / AffineGrid -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_grid_sample_matches_onnxruntime(mode, padding):
    feeds = {"x": floats(2, 3, 5, 6), "grid": RNG.uniform(-1.7, 1.7, (2, 4, 3, 2)).astype(np.float32)}
    for align in (0, 1):
        m = one_node("GridSample", ["x", "grid"], feeds, [("y", FLOAT)], 20, mode=mode, padding_mode=padding,
                     align_corners=align)
        assert run_both(m, feeds)["y"].shape == (2, 3, 4, 3)


def test_grid_sample_volumetric_and_opset16_names():
    feeds = {"x": floats(1, 2, 3, 4, 5), "grid": RNG.uniform(-1.2, 1.2, (1, 2, 3, 2, 3)).astype(np.float32)}
    run_both(one_node("GridSample", ["x", "grid"], feeds, [("y", FLOAT)], 20, mode="linear"), feeds)
    feeds2 = {"x": floats(1, 2, 4, 4), "grid": RNG.uniform(-1, 1, (1, 3, 3, 2)).astype(np.float32)}
    run_both(one_node("GridSample", ["x", "grid"], feeds2, [("y", FLOAT)], 16, mode="bicubic"), feeds2)
    with pytest.raises(UnsupportedOperatorError, match="mode='linear' is not supported.*bilinear"):
        load(one_node("GridSample", ["x", "grid"], feeds2, [("y", FLOAT)], 16, mode="linear"))


def test_affine_grid_shape_comes_from_constant_size():
    theta = floats(2, 3, 4)
    m = one_node("AffineGrid", ["theta", "size"], {"theta": theta}, [("grid", FLOAT)], 20,
                 {"size": np.array([2, 1, 3, 4, 5], np.int64)}, align_corners=1)
    assert load(m).outputs[0].shape == (2, 3, 4, 5, 3)
    run_both(m, {"theta": theta})
    size = np.array([2, 1, 4, 5], np.int64)
    m = one_node("AffineGrid", ["theta", "size"], {"theta": floats(2, 2, 3), "size": size}, [("grid", FLOAT)], 20)
    assert load(m).outputs[0].shape == (2, None, None, 2)


# --- random generators -------------------------------------------------------------------------------

def test_random_ops_are_never_folded_and_seeds_reproduce():
    x = np.zeros((3, 4), np.float32)
    m = one_node("RandomUniformLike", ["x"], {}, [("y", TensorProto.DOUBLE)], 22, {"x": x},
                 dtype=TensorProto.DOUBLE, low=-2.0, high=-1.0, seed=3.0)
    graph = load(m)
    assert [n.op_type for n in graph.nodes] == ["RandomUniformLike"]   # constant input, still not folded
    a, b = run_reference(graph, {})["y"], run_reference(graph, {})["y"]
    assert a.dtype == np.float64 and a.shape == (3, 4) and np.array_equal(a, b)
    assert ((a >= -2) & (a < -1)).all()
    m = one_node("RandomNormal", [], {}, [("y", FLOAT)], 22, shape=[2000], mean=5.0, scale=0.5)
    draws = run_reference(load(m), {})["y"]
    assert draws.dtype == np.float32 and abs(draws.mean() - 5.0) < 0.1


def test_bernoulli_and_like_dtype_rules():
    p = np.full((4000,), 0.25, np.float32)
    m = one_node("Bernoulli", ["p"], {"p": p}, [("y", TensorProto.INT32)], 22, dtype=TensorProto.INT32, seed=1.0)
    y = ours(m, {"p": p})["y"]
    assert y.dtype == np.int32 and set(np.unique(y)) <= {0, 1} and abs(y.mean() - 0.25) < 0.03
    m = one_node("RandomNormalLike", ["i"], {"i": np.zeros(3, np.int64)}, [("y", INT64)], 22)
    with pytest.raises(InvalidModelError, match="int64 is not a floating-point type"):
        load(m)
