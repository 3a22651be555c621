"""Synthetic ranked detections shared by the bench tests: well-separated rows, and boxes whose IoUs sit at or away
from the NMS threshold."""

from typing import Sequence

import numpy as np

from dnnfusion.bench.detections import NmsThresholds

ROWS = 12
NMS = NmsThresholds(iou=0.5, score=0.05)
S = [0.0, 0.0, 100.0, 100.0]                          # the top detection of label 1
A = [0.0, 100 / 3, 100.0, 100 + 100 / 3]              # IoU(A, S) = 0.5: a keep decision at the threshold
B = [0.0, 60.0, 100.0, 160.0]                         # IoU(B, A) = 0.58, IoU(B, S) = 0.25


def detections(seed: int = 0) -> dict[str, np.ndarray]:
    """ROWS detections, scores well apart and descending, boxes on a grid (no two overlap), with masks."""
    rng = np.random.default_rng(seed)
    cells = rng.permutation(64)[:ROWS]
    x, y = 200.0 * (cells % 8) + 300, 200.0 * (cells // 8) + 300
    size = rng.uniform(40, 90, (ROWS, 2))
    boxes = np.stack([x, y, x + size[:, 0], y + size[:, 1]], axis=1).astype(np.float32)
    scores = np.linspace(0.9, 0.35, ROWS).astype(np.float32)
    labels = rng.integers(1, 4, ROWS).astype(np.int64)
    masks = rng.uniform(0, 1, (ROWS, 1, 4, 4)).astype(np.float32)
    return {"boxes": boxes, "scores": scores, "labels": labels, "masks": masks}


def rows(outputs: dict[str, np.ndarray], order: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """A copy with the rows taken in `order`."""
    return {k: v[order].copy() for k, v in outputs.items()}


def with_row(outputs: dict[str, np.ndarray], k: int, box: list[float], score: float,
             label: int) -> dict[str, np.ndarray]:
    """A copy with row k replaced by another detection, rows re-ranked by score like the fixed TopK."""
    out = {name: v.copy() for name, v in outputs.items()}
    out["boxes"][k], out["scores"][k], out["labels"][k] = box, score, label
    return rows(out, np.argsort(-out["scores"], kind="stable"))
