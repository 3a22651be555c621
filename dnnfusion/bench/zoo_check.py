"""Zoo models compiled at one level and checked against onnxruntime on the export's sample input: per-output
differences, fallback operators, kernels, arena against intermediates, compile and run seconds.

Every output is compared strictly (`oracle.compare`, rtol 1e-3 / atol 1e-4), except ranked detections: a model
whose outputs include `boxes` [D, 4], `scores` [D] and `labels` [D] (the R-CNNs: the rows of a fixed-size TopK
over NMS survivors) has those outputs, and every other output with D leading rows (masks), compared as a set of
detections by `match_detections`, because two correct runtimes may order near-tied rows differently and may
disagree on rows at the TopK cut-off or at an NMS threshold."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

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
        return not self.unexplained_ours and not self.unexplained_reference


@dataclass
class OutputCheck:
    """One output's comparison with onnxruntime."""

    name: str
    ok: bool
    max_abs: float
    max_rel: float


@dataclass
class CheckRow:
    """One zoo model at one level: correctness against onnxruntime and what the compiler produced."""

    name: str
    level: str
    small: bool
    ok: bool = False
    outputs: list[OutputCheck] = field(default_factory=list)
    method: str = "strict"                       # or "detections" (match_detections)
    tie_mismatched: int = 0
    unexplained_rows: int = 0
    fallback_ops: list[str] = field(default_factory=list)
    native_calls: int = 0
    kernels: int = 0
    arena_bytes: int = 0
    irs_bytes_before: int = 0
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    ort_seconds: float = 0.0
    error: str | None = None

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), default=0.0)

    @property
    def arena_below_irs(self) -> bool:
        return 0 < self.arena_bytes < self.irs_bytes_before


def is_ranked_detections(outputs: Mapping[str, np.ndarray]) -> bool:
    """Whether the outputs are the rows of a fixed-size detection TopK: boxes [D, 4], scores [D], labels [D]."""
    if not all(k in outputs for k in DETECTION_FIELDS):
        return False
    rows = len(outputs["scores"])
    return (outputs["scores"].shape == (rows,) and outputs["labels"].shape == (rows,)
            and outputs["boxes"].shape == (rows, 4))


def nms_thresholds(model: onnx.ModelProto) -> NmsThresholds | None:
    """The thresholds of the graph's last NonMaxSuppression (the one that filters the detections), if constant."""
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    last = [n for n in model.graph.node if n.op_type == "NonMaxSuppression"][-1:]
    if not last:
        return None
    inputs = list(last[0].input) + [""] * 5

    def scalar(name: str) -> float | None:
        return float(constants[name].reshape(-1)[0]) if name in constants else None

    iou_threshold = scalar(inputs[3]) if inputs[3] else 0.0
    return None if iou_threshold is None else NmsThresholds(iou_threshold, scalar(inputs[4]) if inputs[4] else None)


def _compatible(ours: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], names: list[str],
                rtol: float, atol: float) -> np.ndarray:
    """[ours row, reference row] -> whether the rows are the same detection. Integer fields must be equal, scores
    close elementwise, other float fields close with the reference row's magnitude as the scale (a box's rounding
    error grows with its extent and position, not with each coordinate's distance from the image origin)."""
    rows = len(reference["scores"])
    same = np.ones((rows, rows), bool)
    for name in names:
        a = np.asarray(ours[name]).reshape(rows, -1)
        b = np.asarray(reference[name]).reshape(rows, -1)
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


def _tied(side: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray], row: int, nms: NmsThresholds | None,
          rtol: float, atol: float) -> bool:
    """Whether a tie explains an unpaired row: its score is at or below the other side's cut-off (the other runtime
    ranked it past its last row), at the NMS score threshold, or it overlaps a higher-scored detection of the same
    label with an IoU at the NMS threshold (a keep decision that rounding may flip either way)."""
    score, label = float(side["scores"][row]), side["labels"][row]
    cutoff = float(np.min(other["scores"]))
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
             unpaired_ref: list[int], nms: NmsThresholds | None, rtol: float, atol: float) -> tuple[set, set]:
    """The unpaired rows of each side that ties explain, directly or through a cascade of flipped NMS decisions."""
    sides = [(ours, reference, unpaired_ours), (reference, ours, unpaired_ref)]
    explained = [{r for r in rows if _tied(side, other, r, nms, rtol, atol)} for side, other, rows in sides]
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
                     nms: NmsThresholds | None = None, rtol: float = RTOL, atol: float = ATOL) -> DetectionMatch:
    """Compare ranked detections as sets: pair every reference row with one of ours (same label, score, box and
    every other per-row output within tolerance), whatever their order; then accept unpaired rows only where a tie
    explains them (`_tied`, `_suppressed_by`). Rows deeper in the model than these outputs show (an RPN proposal swapped at
    its own cut-off) are not explained here: they show up as unexplained rows."""
    names = [k for k, v in reference.items() if np.ndim(v) >= 1 and len(v) == len(reference["scores"])]
    same = _compatible(ours, reference, names, rtol, atol)
    pairs = _max_matching(same)
    rows = len(reference["scores"])
    unpaired_ref = [j for j in range(rows) if j not in pairs]
    unpaired_ours = [i for i in range(rows) if i not in set(pairs.values())]
    explained_ours, explained_ref = _explain(ours, reference, unpaired_ours, unpaired_ref, nms, rtol, atol)
    max_abs, max_rel = {}, {}
    ref_rows, our_rows = list(pairs), list(pairs.values())
    for name in names:
        diffs = compare({name: np.asarray(ours[name])[our_rows]}, {name: np.asarray(reference[name])[ref_rows]},
                        rtol, atol)
        max_abs[name], max_rel[name] = diffs[0].max_abs, diffs[0].max_rel
    return DetectionMatch(len(pairs), len(explained_ours) + len(explained_ref),
                          tuple(sorted(set(unpaired_ours) - explained_ours)),
                          tuple(sorted(set(unpaired_ref) - explained_ref)), max_abs, max_rel)



@dataclass(frozen=True)
class Reference:
    """onnxruntime's outputs for an export's sample input, and how long the one run took."""

    outputs: dict[str, np.ndarray]
    seconds: float


def onnxruntime_reference(model_path: Path, feeds: Mapping[str, np.ndarray]) -> Reference:
    """Run the model once in onnxruntime (ORT_ENABLE_ALL, default threads)."""
    from ..oracle import run_onnxruntime  # noqa: PLC0415

    start = time.perf_counter()
    outputs = run_onnxruntime(str(model_path), feeds)
    return Reference(outputs, time.perf_counter() - start)


def judge(row: CheckRow, outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
          model_path: Path) -> None:
    """Fill the row's per-output checks: ranked detections as sets, every other output strictly."""
    strict = dict(reference)
    if is_ranked_detections(reference):
        rows = len(reference["scores"])
        detections = {k: v for k, v in reference.items() if np.ndim(v) >= 1 and len(v) == rows}
        if all(np.shape(outputs.get(k)) == np.shape(v) for k, v in detections.items()):
            strict = {k: v for k, v in reference.items() if k not in detections}
            nms = nms_thresholds(onnx.load(str(model_path), load_external_data=False))
            match = match_detections(outputs, detections, nms)
            row.method = "detections"
            row.tie_mismatched = match.tie_mismatched
            row.unexplained_rows = len(match.unexplained_ours) + len(match.unexplained_reference)
            row.outputs += [OutputCheck(k, match.ok, match.max_abs[k], match.max_rel[k]) for k in detections]
    row.outputs += [OutputCheck(d.name, d.ok, d.max_abs, d.max_rel) for d in compare(outputs, strict)]
    row.ok = bool(row.outputs) and all(o.ok for o in row.outputs)


def check_model(name: str, level: str, small: bool = False, reference: Reference | None = None,
                progress: Callable[[str], None] = lambda message: None) -> CheckRow:
    """Export zoo model `name` (cached), compile it at `level`, run it once on the sample input and check it
    against onnxruntime (`reference`, computed here when not given); a crash is recorded in the row, not raised."""
    import dnnfusion  # noqa: PLC0415

    from ..zoo import export  # noqa: PLC0415

    row = CheckRow(name, level, small)
    try:
        progress("exporting")
        result = export.export(name, small=small)
        feeds = result.feeds()
        if reference is None:
            progress("running onnxruntime")
            reference = onnxruntime_reference(result.model_path, feeds)
        row.ort_seconds = reference.seconds
        progress(f"compiling at {level}")
        compiled = dnnfusion.compile(result.model_path, result.input_shapes, opt_level=level)
        stats = compiled.stats
        row.compile_seconds = stats["compile_seconds"]
        row.fallback_ops = list(stats["fallback_ops"])
        row.native_calls = stats["native_calls_per_run"]
        row.kernels = stats["blocks"]
        row.arena_bytes, row.irs_bytes_before = stats["arena_bytes"], stats["irs_bytes_before"]
        progress("running")
        start = time.perf_counter()
        outputs = compiled.run(feeds)
        row.run_seconds = time.perf_counter() - start
        judge(row, outputs, reference.outputs, result.model_path)
    except Exception as e:  # noqa: BLE001 - a crash is a result to report
        row.ok, row.error = False, f"{type(e).__name__}: {e}"
    return row
