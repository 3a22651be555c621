"""Order-insensitive comparison of ranked detections. A model whose outputs include `boxes` [D, 4], `scores` [D] and
`labels` [D] (the R-CNNs: the rows of a fixed-size TopK over NMS survivors) has those outputs, and every other output
with D leading rows (masks), compared as a set of detections by `match_detections`, because two correct runtimes may
order near-tied rows differently and may disagree on rows at the TopK cut-off or at an NMS threshold: every reference
row is paired with one of ours (same label, score, box and every other per-row output within tolerance) whatever
their order, and an unpaired row is accepted only where a tie explains it (`_tied`, `_suppressed_by`). Differences
that start deeper in the model (an RPN proposal swapped at its own cut-off) show up here as unexplained rows; see
`dnnfusion.bench.decisions`. `check_outputs` compares a model's outputs this way, every other output strictly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from ..ops.detection import iou
from ..oracle import ATOL, RTOL, compare

DETECTION_FIELDS = ("boxes", "scores", "labels")
IOU_TOLERANCE = 1e-2            # IoUs this close to the NMS threshold may fall either side of it in another runtime


@dataclass(frozen=True)
class NmsThresholds:
    """The IoU and score thresholds of the NonMaxSuppression that last filtered the detections."""

    iou: float
    score: float | None


@dataclass(frozen=True)
class DetectionMatch:
    """Detections matched as sets: rows paired, rows explained by a tie, rows nobody can explain."""

    matched: int
    tie_mismatched: int                          # unpaired rows at the TopK cut-off or at an NMS threshold
    unexplained_ours: tuple[int, ...]            # row indices
    unexplained_reference: tuple[int, ...]
    max_abs: dict[str, float]                    # per output, over paired rows
    max_rel: dict[str, float]

    @property
    def ok(self) -> bool:
        """Every unpaired row is explained by a tie."""
        return not self.unexplained_ours and not self.unexplained_reference


@dataclass
class OutputCheck:
    """One output's comparison with onnxruntime."""

    name: str
    ok: bool
    max_abs: float
    max_rel: float
    as_set: bool = False                         # compared as a set of detections (max errors over paired rows)


def is_ranked_detections(outputs: Mapping[str, np.ndarray]) -> bool:
    """Whether the outputs are the rows of a fixed-size detection TopK: boxes [D, 4], scores [D], labels [D]."""
    if not all(k in outputs for k in DETECTION_FIELDS):
        return False
    rows = len(outputs["scores"])
    return (outputs["scores"].shape == (rows,) and outputs["labels"].shape == (rows,)
            and outputs["boxes"].shape == (rows, 4))


def graph_constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and Constant node values by name."""
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return constants


def node_nms_thresholds(node: onnx.NodeProto, constants: Mapping[str, np.ndarray]) -> NmsThresholds | None:
    """One NonMaxSuppression's thresholds, or None when its IoU threshold is not a constant."""
    inputs = list(node.input) + [""] * 5

    def scalar(name: str) -> float | None:
        return float(constants[name].reshape(-1)[0]) if name in constants else None

    iou_threshold = scalar(inputs[3]) if inputs[3] else 0.0
    return None if iou_threshold is None else NmsThresholds(iou_threshold, scalar(inputs[4]) if inputs[4] else None)


def nms_thresholds(model: onnx.ModelProto) -> NmsThresholds | None:
    """The thresholds of the graph's last NonMaxSuppression (the one that filters the detections), if constant."""
    last = [n for n in model.graph.node if n.op_type == "NonMaxSuppression"][-1:]
    return node_nms_thresholds(last[0], graph_constants(model)) if last else None


def _compatible(ours: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], names: list[str],
                rtol: float, atol: float) -> np.ndarray:
    """[ours row, reference row] -> whether the rows are the same detection. Integer fields must be equal, scores
    close elementwise, other float fields close with the reference row's magnitude as the scale (a box's rounding
    error grows with its extent and position, not with each coordinate's distance from the image origin)."""
    same = np.ones((len(ours["scores"]), len(reference["scores"])), bool)
    for name in names:
        a = np.asarray(ours[name]).reshape(len(ours["scores"]), -1)
        b = np.asarray(reference[name]).reshape(len(reference["scores"]), -1)
        if b.dtype.kind not in "fc":
            same &= (a[:, None, :] == b[None, :, :]).all(axis=2)
            continue
        a, b = a.astype(np.float64), b.astype(np.float64)
        scale = np.abs(b) if name == "scores" else np.abs(b).max(axis=1, keepdims=True)
        same &= (np.abs(a[:, None, :] - b[None, :, :]) <= atol + rtol * scale[None, :, :]).all(axis=2)
    return same


def _max_matching(same: np.ndarray) -> dict[int, int]:
    """Maximum bipartite matching (Kuhn's augmenting paths): reference row -> ours row."""
    partner: dict[int, int] = {}                 # ours row -> reference row

    def augment(j: int, seen: set[int]) -> bool:
        for i in np.flatnonzero(same[:, j]):
            if i in seen:
                continue
            seen.add(i)
            if i not in partner or augment(partner[i], seen):
                partner[int(i)] = j
                return True
        return False

    for j in range(same.shape[1]):
        augment(j, set())
    return {j: i for i, j in partner.items()}


def _cutoff(rows: Mapping[str, np.ndarray], label: int, limit: int | None) -> float:
    """The lowest score that made it into `rows`: of all rows for a fixed-size ranking (limit None), else of the
    label's rows where the label filled its `limit`; -inf where nothing was cut."""
    if limit is not None:
        scores = rows["scores"][rows["labels"] == label]
        return float(scores.min()) if len(scores) >= limit else -np.inf
    return float(rows["scores"].min()) if len(rows["scores"]) else -np.inf


def _tied(side: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray], row: int, nms: NmsThresholds | None,
          limit: int | None, rtol: float, atol: float) -> bool:
    """Whether a tie explains an unpaired row: its score is at or below the other side's cut-off (the other runtime
    ranked it past its last row), at the NMS score threshold, or it overlaps a higher-scored detection of the same
    label with an IoU at the NMS threshold (a keep decision that rounding may flip either way)."""
    score, label = float(side["scores"][row]), side["labels"][row]
    cutoff = _cutoff(other, label, limit)
    if score <= cutoff + atol + rtol * abs(cutoff):
        return True
    if nms is None:
        return False
    if nms.score is not None and abs(score - nms.score) <= atol + rtol * abs(nms.score):
        return True
    for boxes, labels, scores in ((side["boxes"], side["labels"], side["scores"]),
                                  (other["boxes"], other["labels"], other["scores"])):
        higher = (labels == label) & (scores > score)
        if higher.any() and (np.abs(iou(side["boxes"][row], boxes[higher]) - nms.iou) <= IOU_TOLERANCE).any():
            return True
    return False


def _suppressed_by(side: Mapping[str, np.ndarray], row: int, other: Mapping[str, np.ndarray], flipped: set[int],
                   nms: NmsThresholds) -> bool:
    """Whether one of the other side's explained extra detections would have suppressed `row` there (same label,
    higher score, IoU above the threshold): the cascade of a flipped keep decision."""
    for o in flipped:
        if (other["labels"][o] == side["labels"][row] and other["scores"][o] > side["scores"][row]
                and iou(side["boxes"][row], other["boxes"][o][None])[0] > nms.iou - IOU_TOLERANCE):
            return True
    return False


def _explain(ours: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], unpaired_ours: list[int],
             unpaired_ref: list[int], nms: NmsThresholds | None, limit: int | None, rtol: float,
             atol: float) -> tuple[set[int], set[int]]:
    """The unpaired rows of each side that ties explain, directly or through a cascade of flipped NMS decisions."""
    sides = [(ours, reference, unpaired_ours), (reference, ours, unpaired_ref)]
    explained = [{r for r in rows if _tied(side, other, r, nms, limit, rtol, atol)} for side, other, rows in sides]
    changed = nms is not None
    while changed:
        changed = False
        for k, (side, other, rows) in enumerate(sides):
            for r in set(rows) - explained[k]:
                if _suppressed_by(side, r, other, explained[1 - k], nms):
                    explained[k].add(r)
                    changed = True
    return explained[0], explained[1]


def match_detections(ours: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                     nms: NmsThresholds | None = None, limit: int | None = None, rtol: float = RTOL,
                     atol: float = ATOL) -> DetectionMatch:
    """Compare detections as sets, whatever their order; a fixed-size ranking (a TopK: the lowest score is a
    cut-off) unless `limit` is given, then NMS selections of at most `limit` per label."""
    names = [k for k, v in reference.items() if np.ndim(v) >= 1 and len(v) == len(reference["scores"])]
    same = _compatible(ours, reference, names, rtol, atol)
    pairs = _max_matching(same)
    unpaired_ref = [j for j in range(len(reference["scores"])) if j not in pairs]
    unpaired_ours = [i for i in range(len(ours["scores"])) if i not in set(pairs.values())]
    explained_ours, explained_ref = _explain(ours, reference, unpaired_ours, unpaired_ref, nms, limit, rtol, atol)
    max_abs, max_rel = {}, {}
    ref_rows, our_rows = list(pairs), list(pairs.values())
    for name in names:
        diffs = compare({name: np.asarray(ours[name])[our_rows]}, {name: np.asarray(reference[name])[ref_rows]},
                        rtol, atol)
        max_abs[name], max_rel[name] = diffs[0].max_abs, diffs[0].max_rel
    return DetectionMatch(len(pairs), len(explained_ours) + len(explained_ref),
                          tuple(sorted(set(unpaired_ours) - explained_ours)),
                          tuple(sorted(set(unpaired_ref) - explained_ref)), max_abs, max_rel)


def check_outputs(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                  model_path: Path, rtol: float = RTOL, atol: float = ATOL) -> tuple[list[OutputCheck],
                                                                                 DetectionMatch | None]:
    """Per-output checks, ranked detections as sets (with their match, else None) and every other output strictly,
    within `rtol` and `atol`."""
    checks: list[OutputCheck] = []
    match = None
    strict = dict(reference)
    if is_ranked_detections(reference):
        rows = len(reference["scores"])
        detections = {k: v for k, v in reference.items() if np.ndim(v) >= 1 and len(v) == rows}
        if all(np.shape(outputs.get(k)) == np.shape(v) for k, v in detections.items()):
            strict = {k: v for k, v in reference.items() if k not in detections}
            nms = nms_thresholds(onnx.load(str(model_path), load_external_data=False))
            match = match_detections(outputs, detections, nms, rtol=rtol, atol=atol)
            checks += [OutputCheck(k, match.ok, match.max_abs[k], match.max_rel[k], True) for k in detections]
    checks += [OutputCheck(d.name, d.ok, d.max_abs, d.max_rel) for d in compare(outputs, strict, rtol, atol)]
    return checks, match
