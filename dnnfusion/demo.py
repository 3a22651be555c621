"""`dnnfusion demo`: the built-in model through import, shape binding, folding and the reference executor,
checked against onnxruntime. Later stages (fusion plan, code generation) will join this pipeline."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
from rich.console import Console
from rich.table import Table

from .errors import DnnfusionError
from .ir import from_onnx, infer_shapes
from .oracle import compare, run_onnxruntime
from .rewrite import fold_constants
from .runtime import ReferenceExecutor
from .stats import graph_stats
from .zoo import demo_model


def run_demo(batch: int, seq: int, save: Path | None, console: Console) -> None:
    """Print each stage with its timing and result; raise if our outputs differ from onnxruntime's."""
    model = demo_model()
    if save is not None:
        onnx.save(model, save)
        console.print(f"wrote {save}")
    console.print(f"[bold]dnnfusion demo[/]: '{model.graph.name}' (a transformer encoder layer), "
                  f"batch={batch}, seq={seq}")
    shapes = {"x": (batch, seq, 64), "mask": (batch, seq)}
    timings = Table(title="pipeline", title_justify="left")
    for col, justify in (("stage", "left"), ("result", "left"), ("time", "right")):
        timings.add_column(col, justify=justify)

    t = time.perf_counter()
    graph = from_onnx(model)
    loaded = sum(n.op_type != "Constant" for n in graph.nodes)
    timings.add_row("import", f"{loaded} operators, inputs {[(v.name, v.shape) for v in graph.inputs]}", _ms(t))
    t = time.perf_counter()
    infer_shapes(graph, shapes)
    timings.add_row("bind + static shapes", f"inputs bound to {shapes}", _ms(t))
    t = time.perf_counter()
    fold_constants(graph)
    stats = graph_stats(graph)
    timings.add_row("fold constants", f"{loaded - stats.ops_total} shape/constant operators folded -> "
                    f"{stats.ops_total} operators", _ms(t))

    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((batch, seq, 64)).astype(np.float32),
             "mask": (rng.random((batch, seq)) > 0.2).astype(np.float32)}
    executor = ReferenceExecutor(graph)
    t = time.perf_counter()
    ours = executor.run(feeds)
    timings.add_row("reference executor", f"y {ours['y'].shape} {ours['y'].dtype}", _ms(t))
    t = time.perf_counter()
    theirs = run_onnxruntime(model, feeds)
    timings.add_row("onnxruntime (oracle)", f"y {theirs['y'].shape}", _ms(t))
    console.print(timings)

    mix = ", ".join(f"{k} {v}" for k, v in stats.ops_by_mapping.items() if v)
    console.print(f"operators by mapping type: {mix}")
    console.print(f"FLOPs {stats.flops / 1e6:.2f} M, parameters {stats.param_bytes / 1024:.0f} KiB, "
                  f"intermediate results {stats.irs_bytes / 1024:.0f} KiB")
    for diff in compare(ours, theirs):
        verdict = "[green]match[/]" if diff.ok else "[red]MISMATCH[/]"
        console.print(f"output '{diff.name}': max abs err {diff.max_abs:.2e}, max rel err {diff.max_rel:.2e} "
                      f"(rtol 1e-3, atol 1e-4): {verdict}")
        if not diff.ok:
            raise DnnfusionError(f"output '{diff.name}' differs from onnxruntime beyond tolerance")


def _ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1e3:.1f} ms"
