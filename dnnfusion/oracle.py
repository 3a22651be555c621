"""The correctness oracle: run a model in onnxruntime and compare outputs with ours (DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import onnx

from .errors import DnnfusionError

RTOL, ATOL = 1e-3, 1e-4


def import_onnxruntime():
    """The onnxruntime module, or a one-line error saying how to install it (it is an optional extra)."""
    try:
        import onnxruntime  # noqa: PLC0415 - optional dependency
    except ImportError as e:
        raise DnnfusionError("onnxruntime is not installed; install it with pip install 'dnnfusion[oracle]'") from e
    return onnxruntime


@dataclass(frozen=True)
class OutputDiff:
    """How far one output is from the oracle's."""

    name: str
    max_abs: float
    max_rel: float
    ok: bool


def run_onnxruntime(model: onnx.ModelProto | bytes | str, feeds: Mapping[str, np.ndarray],
                    optimized: bool = True, threads: int = 0) -> dict[str, np.ndarray]:
    """Outputs by name from onnxruntime's CPU provider."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = threads
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds))))


def compare(ours: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
            rtol: float = RTOL, atol: float = ATOL) -> list[OutputDiff]:
    """Per output: max absolute and relative error, and whether allclose(rtol, atol) holds."""
    diffs = []
    for name, ref in reference.items():
        got = np.asarray(ours[name])
        ref = np.asarray(ref)
        if got.shape != ref.shape:
            diffs.append(OutputDiff(name, float("inf"), float("inf"), False))
            continue
        if ref.dtype.kind in "fc":
            a, b = got.astype(np.float64), ref.astype(np.float64)
            err = np.abs(a - b)
            finite = np.isfinite(b)
            max_abs = float(err[finite].max(initial=0.0))
            max_rel = float((err[finite] / np.maximum(np.abs(b[finite]), 1e-12)).max(initial=0.0))
            ok = bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))
        else:
            ok = bool(np.array_equal(got, ref))
            max_abs = max_rel = 0.0 if ok else float("inf")
        diffs.append(OutputDiff(name, max_abs, max_rel, ok))
    return diffs
