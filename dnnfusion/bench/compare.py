"""Zoo models side by side: dnnfusion at chosen levels against onnxruntime (ORT_ENABLE_ALL and ORT_DISABLE_ALL) and,
when asked, OpenVINO; each runtime in its own worker process, taking turns in blocks of runs, same inputs, same
threads, optionally with busy neighbours; every output checked against onnxruntime's before timing. A model
file (`bench_file`) goes through the same workers, fed seeded random inputs of the bound shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .detections import OutputCheck
from .timing import RuntimeWorkers, Timing, busy_neighbours

REFERENCE = "ORT_ENABLE_ALL"


@dataclass
class ModelResult:
    name: str
    timings: dict[str, Timing]
    stats: dict[str, dict]           # level -> compile statistics
    max_abs_error: float
    load: int = 0                    # busy neighbour processes during the timing


def bench_zoo_model(name: str, levels: tuple[str, ...] = ("O0", "O3"), threads: int = 2, blocks: int = 8,
                    runs: int = 5, budget_seconds: float = 60.0, small: bool = False, load: int = 0,
                    peers: Sequence[str] = ("ORT_DISABLE_ALL",),
                    progress: Callable[[str], None] = lambda message: None) -> ModelResult:
    """Export (cached), load every runtime in its own process, check outputs, then time them in turns."""
    from ..zoo import export  # noqa: PLC0415

    progress(f"{name}: exporting")
    result = export.export(name, small=small)
    return bench_model(name, result.model_path, result.feeds(), levels, threads, blocks, runs, budget_seconds,
                       load, peers, progress)


def bench_file(path: Path, input_shapes: Mapping[str, Any] | None = None, levels: tuple[str, ...] = ("O0", "O3"),
               threads: int = 2, blocks: int = 8, runs: int = 5, budget_seconds: float = 60.0, load: int = 0,
               peers: Sequence[str] = ("ORT_DISABLE_ALL",), progress: Callable[[str], None] = lambda message: None,
               name: str | None = None) -> ModelResult:
    """An .onnx file, its inputs bound by `input_shapes` (as `pipeline.load` takes them) and fed seeded random
    values, through the same worker processes as a zoo model."""
    from ..errors import ModelLoadError  # noqa: PLC0415
    from ..pipeline import load as load_graph  # noqa: PLC0415
    from ..runtime import random_feeds  # noqa: PLC0415

    name = name or Path(path).name
    if not Path(path).is_file():
        raise ModelLoadError(f"{path}: no such model file; give an .onnx file or a zoo model name")
    progress(f"{name}: binding input shapes")
    feeds = random_feeds(load_graph(path, input_shapes, fold=False))
    return bench_model(name, Path(path), feeds, levels, threads, blocks, runs, budget_seconds, load, peers, progress)


def bench_model(name: str, path: Path, feeds: Mapping[str, np.ndarray], levels: tuple[str, ...], threads: int,
                blocks: int, runs: int, budget_seconds: float, load: int, peers: Sequence[str],
                progress: Callable[[str], None]) -> ModelResult:
    """Load every runtime on `path` in its own process, check outputs against onnxruntime's, then time them in
    turns."""
    from ..errors import DnnfusionError  # noqa: PLC0415

    ours = [f"dnnfusion {level}" for level in levels]
    runtimes = ours + [REFERENCE] + [p for p in peers if p != REFERENCE]
    with RuntimeWorkers(runtimes, path, feeds, threads,
                        progress=lambda m: progress(f"{name}: {m}")) as workers:
        expected = workers.outputs(REFERENCE)
        worst = 0.0
        for runtime in runtimes:
            if runtime == REFERENCE or runtime == "ORT_DISABLE_ALL":
                continue
            level = runtime.split(" ")[-1] if runtime in ours else None
            checks = check_against_reference(path, feeds, workers.outputs(runtime), expected, level,
                                             lambda m: progress(f"{name}: {runtime}: {m}"))
            bad = [c for c in checks if not c.ok]
            if bad and level is None:
                progress(f"{name}: {runtime}'s output '{bad[0].name}' differs from onnxruntime "
                         f"(max abs {bad[0].max_abs:.2e}); timed anyway")
            elif bad:
                raise DnnfusionError(f"{name} on {runtime}: output '{bad[0].name}' differs from onnxruntime "
                                     f"(max abs {bad[0].max_abs:.2e})")
            if level is not None:
                worst = max([worst] + [c.max_abs for c in checks])
        stats = {runtime.split(" ")[-1]: workers.stats(runtime) for runtime in ours}
        progress(f"{name}: timing" + (f" beside {load} busy process(es)" if load else ""))
        with busy_neighbours(load):
            timings = workers.time(blocks, runs, budget_seconds)
    return ModelResult(name, timings, stats, worst, load)


def check_against_reference(path: Path, feeds: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
                            expected: Mapping[str, np.ndarray], level: str | None,
                            progress: Callable[[str], None]) -> list[OutputCheck]:
    """Per-output checks exactly as the zoo check makes them (`zoo_check.judge`): ranked detections as sets,
    every other output strictly. Detection rows of our build (`level`) that no output-level tie explains are
    traced to the model's selections (`zoo_check.trace` of `check_decisions`, compiling in this process) and
    pass only where every differing selection is a tie."""
    from .decisions import check_decisions  # noqa: PLC0415
    from .zoo_check import CheckRow, compiled_runner, judge, trace  # noqa: PLC0415

    row = CheckRow(path.stem, level or "peer", small=False)
    judge(row, outputs, expected, path)
    if level is not None and row.unexplained_rows:
        progress(f"{row.unexplained_rows} detection rows differ beyond output-level ties; tracing them to the "
                 "model's selections")
        shapes = {k: list(np.shape(v)) for k, v in feeds.items()}
        trace(row, check_decisions(path, feeds, outputs, compiled_runner(feeds, shapes, level)))
        if row.traced_to_ties:
            progress(f"every differing selection is a tie ({row.upstream_ties} upstream)")
    return row.outputs
