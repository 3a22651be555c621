"""Checking a zoo model compiled at one level against onnxruntime on the export's sample input (`check_model`):
per-output differences, fallback operators, kernels, arena against intermediates, compile and run seconds, in one
`CheckRow`. Every output is compared strictly (`oracle.compare`, rtol 1e-3 / atol 1e-4) except ranked detections,
which are compared as sets (`dnnfusion.bench.detections`); detection rows that differ beyond what the outputs can
explain are traced to the selections and sampling regions inside the model (`dnnfusion.bench.decisions`), and pass
only if every selection we made differs from onnxruntime's at ties alone, every region is within tolerance of
onnxruntime's, and, with ours pinned into onnxruntime, the outputs agree."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import onnx

from ..oracle import run_onnxruntime
from .decisions import DecisionCheck, check_decisions
from .detections import OutputCheck, check_outputs


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
    unexplained_rows: int = 0                    # rows no output-level tie explains...
    traced_to_ties: bool = False                 # ...all traced by check_decisions to selections made at ties
    upstream_ties: int = 0
    decisions: list[str] = field(default_factory=list)    # the selections that differ, for the record
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
        """The largest absolute difference over all outputs."""
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        """The largest relative difference over all outputs."""
        return max((o.max_rel for o in self.outputs), default=0.0)

    @property
    def arena_below_irs(self) -> bool:
        """Whether the arena is smaller than the sum of all intermediates (and not empty)."""
        return 0 < self.arena_bytes < self.irs_bytes_before


@dataclass(frozen=True)
class Reference:
    """onnxruntime's outputs for an export's sample input, and how long the one run took."""

    outputs: dict[str, np.ndarray]
    seconds: float


def onnxruntime_reference(model_path: Path, feeds: Mapping[str, np.ndarray]) -> Reference:
    """Run the model once in onnxruntime (ORT_ENABLE_ALL, default threads)."""
    start = time.perf_counter()
    outputs = run_onnxruntime(str(model_path), feeds)
    return Reference(outputs, time.perf_counter() - start)


def compiled_runner(feeds: Mapping[str, np.ndarray], input_shapes: Mapping[str, list[int]],
                    level: str) -> Callable[[onnx.ModelProto], dict[str, np.ndarray]]:
    """`check_decisions`' runner for our compiler at `level`."""
    def run(model: onnx.ModelProto) -> dict[str, np.ndarray]:
        import dnnfusion  # noqa: PLC0415

        return dnnfusion.compile(model, input_shapes, opt_level=level).run(feeds)
    return run


def judge(row: CheckRow, outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
          model_path: Path) -> None:
    """Fill the row's per-output checks: ranked detections as sets, every other output strictly."""
    checks, match = check_outputs(outputs, reference, model_path)
    if match is not None:
        row.method = "detections"
        row.tie_mismatched = match.tie_mismatched
        row.unexplained_rows = len(match.unexplained_ours) + len(match.unexplained_reference)
    row.outputs += checks
    row.ok = bool(row.outputs) and all(o.ok for o in row.outputs)


def check_model(name: str, level: str, small: bool = False, reference: Reference | None = None,
                progress: Callable[[str], None] = lambda message: None) -> CheckRow:
    """Export zoo model `name` (cached), compile it at `level`, run it once on the sample input and check it
    against onnxruntime (`reference`, computed here when not given), tracing detections that differ beyond
    output-level ties (`check_decisions`); a crash is recorded in the row, not raised."""
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
        del compiled
        judge(row, outputs, reference.outputs, result.model_path)
        if row.unexplained_rows:
            progress("tracing differences to selections")
            trace(row, check_decisions(result.model_path, feeds, outputs,
                                       compiled_runner(feeds, result.input_shapes, level)))
    except Exception as e:  # noqa: BLE001 - a crash is a result to report
        row.ok, row.error = False, f"{type(e).__name__}: {e}"
    return row


def trace(row: CheckRow, check: DecisionCheck) -> None:
    """Record `check_decisions`' verdict; detections it traces to ties count as matching."""
    row.upstream_ties = check.ties
    row.traced_to_ties = check.ok
    row.decisions = [f"{d.node} ({d.op}): {d.differing} differing, {'tied' if d.ok else 'NOT tied'}"
                     for d in check.decisions if d.differing or not d.ok]
    row.decisions += [f"pinned output {o.name} differs (max abs {o.max_abs:.3g})" for o in check.pinned_outputs
                      if not o.ok]
    if not check.probe_consistent:
        row.decisions.append("the probed build's outputs differ from the plain build's: inconclusive")
    if not row.decisions:
        row.decisions.append("no selection differs and every region is within tolerance: with the regions pinned, "
                             "the outputs agree")
    if check.ok:
        for output in row.outputs:
            output.ok = output.ok or output.as_set
    row.ok = all(o.ok for o in row.outputs)
