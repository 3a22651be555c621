"""The order-insensitive detection comparison on synthetic detections: permuted and tied rows pass, different
detections fail; ranked detections and NMS thresholds are recognized in a graph."""

import numpy as np
import onnx
from onnx import TensorProto, helper

from dnnfusion.bench.detections import is_ranked_detections, match_detections, nms_thresholds
from tests.bench.synthetic_detections import NMS, ROWS, A, B, S, detections, rows, with_row
from tests.helpers import make_model


def test_identical_and_permuted_detections_match():
    ref = detections()
    same = match_detections(ref, ref, NMS)
    assert same.ok and same.matched == ROWS and same.tie_mismatched == 0
    shuffled = match_detections(rows(ref, np.random.default_rng(1).permutation(ROWS)), ref, NMS)
    assert shuffled.ok and shuffled.matched == ROWS and shuffled.tie_mismatched == 0
    assert shuffled.max_abs == {"boxes": 0.0, "scores": 0.0, "labels": 0.0, "masks": 0.0}


def test_near_tied_rows_in_either_order_with_rounding_noise_match():
    ref = detections()
    ref["scores"][5] = ref["scores"][4] - 1e-6
    ours = rows(ref, [0, 1, 2, 3, 5, 4, *range(6, ROWS)])
    ours["boxes"] += 1e-3                              # far below rtol 1e-3 of the boxes' extent
    ours["scores"] *= 1 + 1e-5
    match = match_detections(ours, ref, NMS)
    assert match.ok and match.matched == ROWS
    assert 9e-4 < match.max_abs["boxes"] < 1.1e-3


def test_box_error_is_measured_against_the_box_not_the_origin():
    ref = detections()
    ref["boxes"][3] = [2.0, 300.0, 60.0, 380.0]        # x1 near the image edge
    ours = {k: v.copy() for k, v in ref.items()}
    ours["boxes"][3, 0] += 0.01                        # 0.5% of x1, 0.003% of the box's largest coordinate
    assert match_detections(ours, ref, NMS).ok
    ours["boxes"][3, 0] += 1.0                         # a box a pixel off is another box
    assert not match_detections(ours, ref, NMS).ok


def test_a_different_detection_above_the_cutoff_fails():
    ref = detections()
    ours = with_row(ref, ROWS - 1, [10.0, 1000.0, 60.0, 1070.0], 0.87, 1)    # a new box ranked second
    match = match_detections(ours, ref, NMS)
    assert not match.ok
    assert match.matched == ROWS - 1 and match.unexplained_ours == (1,) and match.unexplained_reference == ()
    assert match.tie_mismatched == 1                   # ref's last row: ours ranked it past its cut-off


def test_a_wrong_label_box_score_or_mask_fails():
    ref = detections()
    for name, change in (("labels", lambda v: v + 1), ("boxes", lambda v: v + 5.0), ("scores", lambda v: v * 0.9),
                         ("masks", lambda v: 1 - v)):
        ours = {k: v.copy() for k, v in ref.items()}
        ours[name][2] = change(ours[name][2])
        match = match_detections(ours, ref, NMS)
        assert not match.ok, name
        assert match.unexplained_ours == (2,) and match.unexplained_reference == (2,), name


def test_every_detection_shifted_fails():
    ref = detections()
    ours = {**ref, "boxes": ref["boxes"] * 1.01}
    match = match_detections(ours, ref, NMS)
    assert match.matched == 0 and len(match.unexplained_ours) == ROWS - 1    # only the last row is at the cut-off


def test_rows_tied_at_the_topk_cutoff_may_differ():
    ref = detections()
    cutoff = float(ref["scores"][-1])
    ours = with_row(ref, ROWS - 1, [10.0, 1000.0, 60.0, 1070.0], cutoff * (1 + 2e-4), 2)
    match = match_detections(ours, ref, NMS)
    assert match.ok and match.matched == ROWS - 1 and match.tie_mismatched == 2
    ours = with_row(ref, ROWS - 1, [10.0, 1000.0, 60.0, 1070.0], cutoff * 1.01, 2)   # 1% above: not a tie
    assert not match_detections(ours, ref, NMS).ok


def test_suppressed_filler_rows_are_all_at_the_cutoff():
    ref = detections()
    ref["scores"][-3:] = 0.0                           # fewer survivors than rows: zero-score candidates fill up
    ours = {k: v.copy() for k, v in ref.items()}
    ours["boxes"][-2:] += 50.0                         # other suppressed candidates filled in
    match = match_detections(ours, ref, NMS)
    assert match.ok and match.tie_mismatched == 4


def test_a_keep_decision_at_the_iou_threshold_may_flip():
    ref = with_row(detections(), 0, S, 0.95, 1)
    ours = with_row(ref, ROWS - 1, A, 0.85, 1)         # ours kept A (IoU 0.5 with S); the last row fell off
    match = match_detections(ours, ref, NMS)
    assert match.ok and match.tie_mismatched == 2
    far = [0.0, 70.0, 100.0, 170.0]                    # IoU 0.18 with S: ORT could not have suppressed it
    assert not match_detections(with_row(ref, ROWS - 1, far, 0.85, 1), ref, NMS).ok
    assert not match_detections(ours, ref, None).ok    # no NMS in the graph: nothing to flip


def test_a_flipped_detection_may_suppress_another():
    base = with_row(detections(), 0, S, 0.95, 1)
    ref = with_row(base, 6, B, 0.7, 1)                 # ORT kept B
    ours = with_row(base, 6, A, 0.85, 1)               # ours kept A (at the threshold), and A suppressed B
    match = match_detections(ours, ref, NMS)
    assert match.ok and match.tie_mismatched == 2
    ours = with_row(base, 6, [0.0, 70.0, 100.0, 170.0], 0.85, 1)    # not at the threshold: no cascade either
    assert not match_detections(ours, ref, NMS).ok


def test_a_detection_at_the_score_threshold_may_flip():
    ref = detections()
    ref["scores"][-2:] = 0.0
    ours = {k: v.copy() for k, v in ref.items()}
    ours["scores"][-2] = NMS.score * (1 + 5e-4)        # kept by ours, just above the threshold
    ours["boxes"][-2] += 500.0
    assert match_detections(ours, ref, NMS).ok
    ours["scores"][-2] = 0.2
    assert not match_detections(ours, ref, NMS).ok


def test_ranked_detections_are_recognized_by_name_and_shape():
    ref = detections()
    assert is_ranked_detections(ref)
    assert not is_ranked_detections({"boxes": ref["boxes"][None], "scores": ref["scores"][None]})       # SSD-like
    assert not is_ranked_detections({**ref, "boxes": ref["boxes"][:, :2]})


def test_nms_thresholds_come_from_the_last_nms_in_the_graph():
    def constant(name: str, value: float) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [1], [value]))

    def nms(name: str, iou: float, score: float) -> list[onnx.NodeProto]:
        return [constant(f"{name}_iou", iou), constant(f"{name}_score", score),
                helper.make_node("NonMaxSuppression", ["boxes", "scores", "", f"{name}_iou", f"{name}_score"], [name])]
    inputs = [("boxes", TensorProto.FLOAT, [1, 8, 4]), ("scores", TensorProto.FLOAT, [1, 1, 8])]
    model = make_model(nms("rpn", 0.7, 0.0) + nms("box", 0.5, 0.05), inputs, ["rpn", "box"])
    found = nms_thresholds(model)
    assert found.iou == 0.5 and abs(found.score - 0.05) < 1e-8
    assert nms_thresholds(make_model([helper.make_node("Relu", ["boxes"], ["y"])], inputs, ["y"])) is None
