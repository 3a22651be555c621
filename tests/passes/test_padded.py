"""Data-dependent NonMaxSuppression results padded to a static bound: a detection-head region (NMS → Gather →
elementwise → ScatterElements keep mask) compiles with no fallback and equals onnxruntime on random boxes
with ties, thresholds and both box formats; regions that cannot be padded stay correct as fallbacks."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import dnnfusion
from dnnfusion.ir import from_onnx
from dnnfusion.passes import infer_shapes
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.passes import fold_constants, pad_dynamic_extents
from tests.helpers import FLOAT, make_model

INT64 = TensorProto.INT64


def keep_mask_model(batch: int, classes: int, boxes: int, limit: int, score_threshold: float | None,
                    center: int, reduction: str = "none") -> object:
    """scores * keep, where keep[box] = 1 for every box NMS selected in any class (ScatterElements)."""
    inits = {"limit": np.array([limit], np.int64), "iou": np.array([0.5], np.float32),
             "col": np.array(2, np.int64), "zero": np.array(0, np.int64),
             "mask": np.zeros(batch * boxes, np.float32), "stride": np.array(boxes, np.int64),
             "bcol": np.array(0, np.int64)}
    nms_inputs = ["boxes", "scores", "limit", "iou"]
    if score_threshold is not None:
        inits["thr"] = np.array([score_threshold], np.float32)
        nms_inputs.append("thr")
    nodes = [
        helper.make_node("NonMaxSuppression", nms_inputs, ["sel"], center_point_box=center),
        helper.make_node("Gather", ["sel", "col"], ["box"], axis=1),
        helper.make_node("Gather", ["sel", "bcol"], ["img"], axis=1),
        helper.make_node("Mul", ["img", "stride"], ["base"]),
        helper.make_node("Add", ["base", "box"], ["flat"]),
        helper.make_node("GreaterOrEqual", ["flat", "zero"], ["ok"]),
        helper.make_node("Cast", ["ok"], ["ones"], to=TensorProto.FLOAT),
        helper.make_node("ScatterElements", ["mask", "flat", "ones"], ["keep"], axis=0, reduction=reduction),
        helper.make_node("Reshape", ["keep", "shape"], ["keep2"]),
        helper.make_node("ReduceMax", ["scores", "one"], ["best"], keepdims=0),
        helper.make_node("Mul", ["best", "keep2"], ["out"]),
    ]
    inits["shape"] = np.array([batch, boxes], np.int64)
    inits["one"] = np.array([1], np.int64)
    return make_model(nodes, [("boxes", FLOAT, [batch, boxes, 4]), ("scores", FLOAT, [batch, classes, boxes])],
                      ["out"], inits, opset=18, output_type=FLOAT)


def random_boxes(rng: np.random.Generator, batch: int, classes: int, boxes: int) -> dict[str, np.ndarray]:
    """Clustered boxes (so IoU suppression happens) with tied scores (quantized to tenths)."""
    centers = rng.uniform(0, 20, (batch, boxes, 2))
    sizes = rng.uniform(2, 8, (batch, boxes, 2))
    corners = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=-1).astype(np.float32)
    flip = rng.random((batch, boxes)) < 0.3          # some boxes given with swapped corners
    corners[flip] = corners[flip][:, [2, 3, 0, 1]]
    scores = np.round(rng.random((batch, classes, boxes)), 1).astype(np.float32)
    return {"boxes": corners, "scores": scores}


def padded_count(model) -> int:
    graph = infer_shapes(from_onnx(model))
    fold_constants(graph)
    return pad_dynamic_extents(graph)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("batch,classes,boxes,limit,threshold,center", [
    (1, 1, 30, 10, None, 0), (2, 3, 25, 4, 0.35, 0), (1, 2, 40, 100, 0.0, 1), (2, 1, 12, 0, None, 0)])
def test_detection_head_compiles_natively_and_matches(seed, batch, classes, boxes, limit, threshold, center):
    model = keep_mask_model(batch, classes, boxes, limit, threshold, center)
    assert padded_count(model) == 1
    feeds = random_boxes(np.random.default_rng(seed), batch, classes, boxes)
    if center:
        c = feeds["boxes"]
        feeds["boxes"] = np.concatenate([(c[..., :2] + c[..., 2:]) / 2, np.abs(c[..., 2:] - c[..., :2])], -1)
    expected = run_onnxruntime(model.SerializeToString(), feeds)
    for level in ("O0", "O3"):
        compiled = dnnfusion.compile(model, opt_level=level)
        assert compiled.stats["fallback_ops"] == [] and compiled.stats["native_calls_per_run"] == 1
        diffs = compare(compiled.run(feeds), expected)
        assert diffs and all(d.ok for d in diffs), (level, diffs)


@pytest.mark.parametrize("reduction", ["add", "max"])
def test_scatter_reductions_in_the_padded_region(reduction):
    model = keep_mask_model(1, 2, 20, 5, None, 0, reduction)
    feeds = random_boxes(np.random.default_rng(9), 1, 2, 20)
    compiled = dnnfusion.compile(model)
    assert compiled.stats["fallback_ops"] == []
    assert all(d.ok for d in compare(compiled.run(feeds), run_onnxruntime(model.SerializeToString(), feeds)))


@pytest.mark.parametrize("seed", range(3))
def test_selection_as_graph_output_is_trimmed_to_its_count(seed):
    """NonMaxSuppression's result (and a Gather of it) as graph outputs: generated code fills the padded
    buffers, the runtime cuts them to the count, and the session reports the row count as data-dependent."""
    inits = {"limit": np.array([4], np.int64), "iou": np.array([0.4], np.float32), "col": np.array([2], np.int64)}
    nodes = [helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit", "iou"], ["sel"]),
             helper.make_node("Gather", ["sel", "col"], ["picked"], axis=1)]
    model = make_model(nodes, [("boxes", FLOAT, [2, 16, 4]), ("scores", FLOAT, [2, 3, 16])], ["sel", "picked"],
                       inits, opset=18, output_type=INT64)
    feeds = random_boxes(np.random.default_rng(seed), 2, 3, 16)
    session = dnnfusion.InferenceSession(model)
    assert session.compiled.stats["fallback_ops"] == []
    assert [o.name for o in session.get_outputs()] == ["sel", "picked"]
    assert session.get_outputs()[0].shape == [None, 3] and session.get_outputs()[1].shape == [None, 1]
    ours = dict(zip(["sel", "picked"], session.run(None, feeds)))
    expected = run_onnxruntime(model.SerializeToString(), feeds)
    for name in ("sel", "picked"):
        np.testing.assert_array_equal(ours[name], expected[name])


def test_unpaddable_regions_stay_dynamic_and_correct():
    """A reader that mixes rows (ReduceSum over them): the NMS stays a counted fallback, and results still
    equal onnxruntime's."""
    inits = {"limit": np.array([3], np.int64), "iou": np.array([0.5], np.float32), "axes": np.array([0], np.int64)}
    nms = helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit", "iou"], ["sel"])
    summed = make_model([nms, helper.make_node("ReduceSum", ["sel", "axes"], ["total"], keepdims=0)],
                        [("boxes", FLOAT, [1, 10, 4]), ("scores", FLOAT, [1, 2, 10])], ["total"], inits,
                        opset=18, output_type=INT64)
    feeds = random_boxes(np.random.default_rng(4), 1, 2, 10)
    assert padded_count(summed) == 0
    compiled = dnnfusion.compile(summed)
    assert any("NonMaxSuppression" in op for op in compiled.stats["fallback_ops"])
    assert all(d.ok for d in compare(compiled.run(feeds), run_onnxruntime(summed.SerializeToString(), feeds)))
