"""Timing that survives a shared machine (DESIGN §5): the runtimes take turns round by round, after warmup, and
the best run of many is the estimate (the median is reported beside it); every runtime gets the same threads."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..oracle import import_onnxruntime



@dataclass(frozen=True)
class Timing:
    best: float                  # seconds
    median: float
    rounds: int


def interleaved(runners: Mapping[str, Callable[[], Any]], rounds: int = 30, warmup: int = 3,
                budget_seconds: float | None = None, settle_seconds: float = 0.005,
                progress: Callable[[int, int], None] = lambda done, total: None) -> dict[str, Timing]:
    """Time each runner once per round, runners in turn, for `rounds` rounds (fewer if `budget_seconds` runs out
    after at least 5); the first `warmup` rounds are not counted. Before each run the harness sleeps
    `settle_seconds`, so that the previous runtime's worker threads (which spin a while after their work)
    have gone idle and do not steal the cores from the next one."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    start = time.perf_counter()
    for r in range(rounds + warmup):
        for name, run in runners.items():
            time.sleep(settle_seconds)
            t = time.perf_counter()
            run()
            if r >= warmup:
                samples[name].append(time.perf_counter() - t)
        progress(r + 1, rounds + warmup)
        if budget_seconds is not None and r >= warmup + 5 and time.perf_counter() - start > budget_seconds:
            break
    return {name: Timing(min(s), statistics.median(s), len(s)) for name, s in samples.items()}


def onnxruntime_session(model: Any, threads: int, optimized: bool = True):
    """An onnxruntime CPU session with the given threads (intra-op) and ORT_ENABLE_ALL or ORT_DISABLE_ALL."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

