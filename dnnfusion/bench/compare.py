"""Zoo models side by side: dnnfusion at chosen levels against onnxruntime (ORT_ENABLE_ALL and ORT_DISABLE_ALL),
same inputs, same threads, interleaved rounds; outputs checked against onnxruntime before timing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .timing import Timing, interleaved, onnxruntime_session


@dataclass
class ModelResult:
    name: str
    timings: dict[str, Timing]
    stats: dict[str, dict]           # level -> compile statistics
    max_abs_error: float


def bench_zoo_model(name: str, levels: tuple[str, ...] = ("O0", "O3"), threads: int = 2, rounds: int = 20,
                    budget_seconds: float = 60.0, small: bool = False,
                    progress: Callable[[str], None] = lambda message: None) -> ModelResult:
    """Export (cached), compile at each level, check, then time all runtimes round by round."""
    import dnnfusion  # noqa: PLC0415

    from ..errors import DnnfusionError  # noqa: PLC0415
    from ..oracle import compare  # noqa: PLC0415
    from ..zoo import export  # noqa: PLC0415

    progress(f"{name}: exporting")
    result = export.export(name, small=small)
    feeds = result.feeds()
    compiled = {}
    for level in levels:
        progress(f"{name}: compiling at {level}")
        compiled[level] = dnnfusion.compile(result.model_path, result.input_shapes, opt_level=level, threads=threads)
    ort_all = onnxruntime_session(str(result.model_path), threads, optimized=True)
    ort_none = onnxruntime_session(str(result.model_path), threads, optimized=False)
    expected = dict(zip([o.name for o in ort_all.get_outputs()], ort_all.run(None, feeds)))
    worst = 0.0
    for level, model in compiled.items():
        diffs = compare(model.run(feeds), expected)
        bad = [d for d in diffs if not d.ok]
        if bad:
            raise DnnfusionError(f"{name} at {level}: output '{bad[0].name}' differs from onnxruntime "
                                 f"(max abs {bad[0].max_abs:.2e})")
        worst = max([worst] + [d.max_abs for d in diffs])
    runners = {f"dnnfusion {level}": (lambda m=model: m.run(feeds)) for level, model in compiled.items()}
    runners["ORT_ENABLE_ALL"] = lambda: ort_all.run(None, feeds)
    runners["ORT_DISABLE_ALL"] = lambda: ort_none.run(None, feeds)
    progress(f"{name}: timing")
    timings = interleaved(runners, rounds=rounds, warmup=2, budget_seconds=budget_seconds)
    return ModelResult(name, timings, {level: m.stats for level, m in compiled.items()}, worst)
