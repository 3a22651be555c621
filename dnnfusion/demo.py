"""`dnnfusion demo`: the built-in transformer layer compiled end to end (import, shapes, folding, fusion plan, C
code, build), checked against onnxruntime, and timed side by side with onnxruntime on the same threads, each
runtime in its own process so that none of them runs while another's threads spin."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from rich.console import Console
from rich.table import Table

from .bench import RuntimeWorkers, onnxruntime_session
from .errors import DnnfusionError
from .machine import available_cores
from .oracle import compare
from .zoo import demo_model

RUNTIMES = ("dnnfusion O3", "dnnfusion O1", "ORT_ENABLE_ALL", "ORT_DISABLE_ALL")
LABELS = {"dnnfusion O3": "dnnfusion O3", "dnnfusion O1": "dnnfusion O1",
          "ORT_ENABLE_ALL": "onnxruntime ORT_ENABLE_ALL", "ORT_DISABLE_ALL": "onnxruntime ORT_DISABLE_ALL"}
RUNS_PER_BLOCK = 10


def run_demo(batch: int, seq: int, save: Path | None, console: Console, threads: int | None = None,
             rounds: int = 50) -> None:
    """Print the compile statistics, the output check and the speed table; raise if outputs differ."""
    import dnnfusion  # noqa: PLC0415 - the public API, used as a user would

    model = demo_model()
    if save is not None:
        onnx.save(model, save)
        console.print(f"wrote {save}")
    threads = threads or available_cores()
    console.print(f"[bold]dnnfusion demo[/]: '{model.graph.name}' (a transformer encoder layer), batch={batch}, "
                  f"seq={seq}, {threads} thread(s)")
    shapes = {"x": (batch, seq, 64), "mask": (batch, seq)}
    compiled = {}
    with console.status("compiling at O1 and O3", spinner="dots"):
        for level in ("O1", "O3"):
            compiled[level] = dnnfusion.compile(model, shapes, opt_level=level, threads=threads)
    stats = compiled["O3"].stats
    table = Table(title="compiled (O3)", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    for label, value in (("operators as loaded", stats["ops_before"]), ("after folding", stats["ops_after_folding"]),
                         ("kernels (blocks) at O1 / O3", f"{compiled['O1'].stats['blocks']} / {stats['blocks']}"),
                         ("fusion rate", f"{stats['fusion_rate']:.2f}x"),
                         ("intermediate bytes before / after fusion",
                          f"{stats['irs_bytes_before']:,} / {stats['irs_bytes_after']:,}"),
                         ("arena bytes", f"{stats['arena_bytes']:,}"),
                         ("native calls per run", stats["native_calls_per_run"]),
                         ("fallback operators", _summary(stats["fallback_ops"])),
                         ("compile time", f"{stats['compile_seconds']:.2f} s")):
        table.add_row(label, str(value))
    console.print(table)

    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((batch, seq, 64)).astype(np.float32),
             "mask": (rng.random((batch, seq)) > 0.2).astype(np.float32)}
    ort_all = onnxruntime_session(model, threads, optimized=True)
    theirs = dict(zip([o.name for o in ort_all.get_outputs()], ort_all.run(None, feeds)))
    ours = compiled["O3"].run(feeds)
    for diff in compare(ours, theirs):
        verdict = "[green]match[/]" if diff.ok else "[red]MISMATCH[/]"
        console.print(f"output '{diff.name}': max abs err {diff.max_abs:.2e}, max rel err {diff.max_rel:.2e} "
                      f"(rtol 1e-3, atol 1e-4): {verdict}")
        if not diff.ok:
            raise DnnfusionError(f"output '{diff.name}' differs from onnxruntime beyond tolerance")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dnnfusion-demo-") as folder:
        path = Path(folder) / "demo.onnx"
        onnx.save(model, path)
        with console.status("starting one worker process per runtime", spinner="dots") as status:
            with RuntimeWorkers(RUNTIMES, path, feeds, threads, progress=status.update) as workers:
                status.update("timing (each runtime in its own process, taking turns in blocks of runs)")
                timings = workers.time(blocks=max(rounds // RUNS_PER_BLOCK, 2), runs=RUNS_PER_BLOCK,
                                       budget_seconds=20)
    reference = timings["ORT_ENABLE_ALL"]
    speed = Table(title=f"latency over {timings['dnnfusion O3'].rounds} runs per runtime, each runtime in its own "
                        f"process ({time.perf_counter() - started:.1f} s)", title_justify="left")
    for col in ("runtime", "best (ms)", "median (ms)", "p90 (ms)", "ORT_ENABLE_ALL / this (best)", "(median)"):
        speed.add_column(col, justify="left" if col == "runtime" else "right")
    for name, t in timings.items():
        speed.add_row(LABELS[name], f"{t.best * 1e3:.3f}", f"{t.median * 1e3:.3f}", f"{t.p90 * 1e3:.3f}",
                      f"{reference.best / t.best:.2f}x", f"{reference.median / t.median:.2f}x")
    console.print(speed)


def _summary(fallbacks: list[str]) -> str:
    """'none', or the count by operator type."""
    from collections import Counter  # noqa: PLC0415

    counts = Counter(f.split(" ")[0] for f in fallbacks)
    return ", ".join(f"{op} x{n}" for op, n in counts.most_common()) or "none"
