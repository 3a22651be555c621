"""Tracing differences to the selections and sampling positions inside a model: ties pass, wrong choices fail,
and our choices pinned into onnxruntime give our outputs."""

import numpy as np
import onnx
from onnx import TensorProto, helper

from dnnfusion.bench.decisions import ORT_SUFFIX, Decision, _nms_decision, _sampling_decision, _topk_decision, \
    check_decisions
from dnnfusion.bench.zoo_check import compiled_runner
from tests.bench.synthetic_detections import NMS, A, S
from tests.helpers import make_model

CONSTANTS = {"limit": np.array([10]), "iou": np.array([NMS.iou], np.float32),
             "score": np.array([NMS.score], np.float32)}


def topk_node() -> onnx.NodeProto:
    """TopK over the last axis of `x`, K read from `k`."""
    return helper.make_node("TopK", ["x", "k"], ["values", "indices"], name="topk", axis=-1)


def test_a_topk_choice_between_tied_values_is_a_tie():
    x = np.array([[5.0, 4.0, 3.0, 2.9995, 1.0]], np.float32)
    ort = {"x": x, "values" + ORT_SUFFIX: x[:, :3], "indices" + ORT_SUFFIX: np.array([[0, 1, 2]])}
    tied = {"values": x[:, [0, 1, 3]], "indices": np.array([[0, 1, 3]])}
    assert _topk_decision(topk_node(), tied, ort, 1e-3, 1e-4) == Decision("topk", "TopK", 1, True)
    wrong = {"values": x[:, [0, 1, 4]], "indices": np.array([[0, 1, 4]])}
    assert _topk_decision(topk_node(), wrong, ort, 1e-3, 1e-4) == Decision("topk", "TopK", 1, False)
    swapped = {"values": x[:, [1, 0, 2]], "indices": np.array([[1, 0, 2]])}          # out of order: not a tie
    assert not _topk_decision(topk_node(), swapped, ort, 1e-3, 1e-4).ok


def test_an_nms_choice_at_the_iou_threshold_is_a_tie():
    boxes = np.array([[S, A, [300.0, 300.0, 350.0, 350.0], [0.0, 70.0, 100.0, 170.0]]], np.float32)
    scores = np.array([[[0.9, 0.8, 0.7, 0.6]]], np.float32)
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit", "iou", "score"], ["selected"], name="nms")
    ort = {"boxes": boxes, "scores": scores, "selected" + ORT_SUFFIX: np.array([[0, 0, 0], [0, 0, 2], [0, 0, 3]])}
    kept_a = {"selected": np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3]])}    # A at IoU 0.5 with S
    assert _nms_decision(node, kept_a, ort, CONSTANTS) == Decision("nms", "NonMaxSuppression", 1, True)
    lost = {"selected": np.array([[0, 0, 0], [0, 0, 2]])}                          # dropped a box nothing covers
    assert not _nms_decision(node, lost, ort, CONSTANTS).ok


def test_check_decisions_pins_our_choices_into_onnxruntime(tmp_path):
    nodes = [helper.make_node("Mul", ["x", "x"], ["squared"]), topk_node(),
             helper.make_node("Gather", ["squared", "indices"], ["picked"], axis=1)]
    nodes[1].input[0] = "squared"
    model = make_model(nodes, [("x", TensorProto.FLOAT, [1, 6])], ["picked"],
                       {"k": np.array([3], np.int64)}, output_type=TensorProto.FLOAT)
    path = tmp_path / "topk.onnx"
    onnx.save(model, path)
    feeds = {"x": np.array([[0.5, -3.0, 2.0, 1.0, 3.0, -0.1]], np.float32)}
    plain = {"picked": np.array([[[9.0, 9.0, 4.0]]], np.float32)}
    run = compiled_runner(feeds, {"x": [1, 6]}, "O3")
    check = check_decisions(path, feeds, plain, run)
    assert check.ok and check.ties == 0 and check.decisions == [Decision("topk", "TopK", 0, True)]
    assert [(o.name, o.ok, o.max_abs) for o in check.pinned_outputs] == [("picked", True, 0.0)]
    assert not check_decisions(path, feeds, {"picked": plain["picked"] + 1}, run).ok


def test_sampling_positions_must_agree_within_the_tolerance_of_boxes():
    node = helper.make_node("RoiAlign", ["features", "rois", "batch"], ["pooled"], name="align")
    rois = np.array([[2.0, 300.0, 60.0, 380.0], [100.0, 100.0, 150.0, 180.0]], np.float32)
    ort = {"rois" + ORT_SUFFIX: rois}
    close = {"rois": rois + np.float32(0.01)}
    assert _sampling_decision(node, "rois", close, ort, 1e-3, 1e-4) == Decision("align (rois)", "RoiAlign", 0, True)
    far = {"rois": rois + np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0]], np.float32)}
    assert _sampling_decision(node, "rois", far, ort, 1e-3, 1e-4) == Decision("align (rois)", "RoiAlign", 1, False)
