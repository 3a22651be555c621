"""Write docs/BENCHMARKS.md: zoo models compiled at O0 and O3, timed side by side with onnxruntime
(ORT_ENABLE_ALL and ORT_DISABLE_ALL), each runtime in its own process, taking turns in blocks of consecutive runs,
same threads, outputs checked first; then the same with one busy neighbour process (`--load 1`) for the models
of the contention table, and the vision zoo at O3 beside onnxruntime and OpenVINO. Run:
`python tools/gen_bench_doc.py [--threads 2] [--blocks 8] [--vision a,b] [NAME ...]`. Timings
depend on the machine and its load: compare ratios within one run, never across runs."""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import numpy as np
from rich.progress import Progress

from dnnfusion.bench.breakdown import dnnfusion_breakdown, onnxruntime_breakdown
from dnnfusion.bench.compare import bench_zoo_model
from dnnfusion.bench.timing import Timing
from dnnfusion.fusion import ProfileDB
from dnnfusion.options import CompileOptions
from dnnfusion.pipeline import build_plan, plan_model
from dnnfusion.machine import machine_key
from dnnfusion.zoo import export

DOC = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
DEFAULT = ["tinybert", "bert_base", "mobilenetv1_ssd", "efficientnet_b0", "unet"]
UNDER_LOAD = ["tinybert", "bert_base", "efficientnet_b0", "mobilenetv1_ssd"]
VISION = ["efficientnet_b0", "mobilenetv1_ssd", "vgg16", "yolov4", "unet", "c3d", "s3d", "faster_rcnn", "mask_rcnn"]
HEADER = "| model | runtime | best (ms) | median (ms) | p90 (ms) | runs | ORT / this (best) | ORT / this (median) |"


def breakdown_row(name: str, threads: int) -> str:
    """One row of the dense/other split: a profiled O3 build and onnxruntime's node profile on the same input."""
    result = export.export(name)
    plan = plan_model(result.model_path, result.input_shapes, "O3", ProfileDB(threads=threads))
    ours = dnnfusion_breakdown(build_plan(plan, CompileOptions.from_env(threads=threads, profile=True)), result.feeds())
    ort = onnxruntime_breakdown(str(result.model_path), result.feeds(), threads)
    return (f"| {name} | {ours.dense_seconds * 1e3:.2f} | {ours.other_seconds * 1e3:.2f} | "
            f"{ort.dense_seconds * 1e3:.2f} | {ort.other_seconds * 1e3:.2f} | "
            f"{ort.other_seconds / max(ours.other_seconds, 1e-9):.2f}x |")


def timing_row(name: str, runtime: str, t: Timing, reference: Timing) -> str:
    """One table row: best, median, p90, runs, and onnxruntime's best and median over this runtime's."""
    return (f"| {name} | {runtime} | {t.best * 1e3:.2f} | {t.median * 1e3:.2f} | {t.p90 * 1e3:.2f} | {t.rounds} | "
            f"{reference.best / t.best:.2f}x | {reference.median / t.median:.2f}x |")


def vision_table(names: list[str], args: argparse.Namespace) -> list[str]:
    """The vision zoo at O3 beside onnxruntime (ORT_ENABLE_ALL) and OpenVINO (float32), same protocol, and the
    geometric mean of onnxruntime's best over ours (the convolution issue's end-to-end target)."""
    table = ["", "## Vision models against onnxruntime and OpenVINO", "",
             "O3 only, OpenVINO (float32, its own CPU plugin at the same thread count) as a third runtime in the turns.",
             "*latency vs ORT* is this runtime's best over onnxruntime's (below 1: faster than onnxruntime).", "",
             "| model | runtime | best (ms) | median (ms) | p90 (ms) | runs | ORT / this (best) | ORT / this (median) |"
             " latency vs ORT |", "|---|---|---|---|---|---|---|---|---|"]
    ratios = []
    with Progress() as progress:
        task = progress.add_task("vision models", total=len(names))
        for name in names:
            result = bench_zoo_model(name, ("O3",), args.threads, args.blocks, args.runs, args.budget,
                                     peers=("openvino",), progress=lambda m: progress.update(task, description=m))
            reference = result.timings["ORT_ENABLE_ALL"]
            for runtime, t in result.timings.items():
                table.append(timing_row(name, runtime, t, reference) + f" {t.best / reference.best:.2f} |")
            ours = next(t for runtime, t in result.timings.items() if runtime.startswith("dnnfusion"))
            ratios.append(ours.best / reference.best)
            progress.advance(task)
    geomean = float(np.exp(np.mean(np.log(ratios))))
    table += ["", f"Geometric mean of dnnfusion O3's latency over onnxruntime's (best runs), {len(ratios)} models: "
                  f"**{geomean:.2f}x**."]
    return table


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*", default=DEFAULT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=90.0)
    parser.add_argument("--load-models", default=",".join(UNDER_LOAD),
                        help="models also timed beside one busy process (comma-separated; empty for none)")
    parser.add_argument("--vision", default=",".join(VISION),
                        help="models of the O3 / onnxruntime / OpenVINO table (comma-separated; empty for none)")
    args = parser.parse_args()
    lines = ["# Benchmarks", "",
             "Generated by `tools/gen_bench_doc.py`; do not edit by hand. Zoo models at their default configuration,",
             f"{args.threads} threads for every runtime, each runtime in its own process, the runtimes taking turns in",
             f"blocks of {args.runs} consecutive runs ({args.blocks} turns) while the others sit idle; *best* is the fastest",
             "run (the sound estimate on a shared machine), *median* and *p90* beside it. *ORT / this* is onnxruntime",
             "ORT_ENABLE_ALL's figure divided by this runtime's: above 1 means faster than onnxruntime.",
             "Outputs are checked against onnxruntime (rtol 1e-3, atol 1e-4) before timing.", "",
             f"Machine: {machine_key(args.threads)}; {platform.python_version()}; "
             f"{datetime.date.today().isoformat()}.", "",
             HEADER + " kernels | fallbacks | arena (MB) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    loaded = ["", "## Beside a busy neighbour (`dnnfusion bench NAME --load 1`)", "",
              "The same measurement while one other process keeps a core busy for the whole timing (a web server, a",
              "tokenizer, a second model: production machines are never idle). Every runtime keeps its thread count.",
              "", HEADER, "|---|---|---|---|---|---|---|---|"]
    split = ["", "## Where the time goes", "",
             "A profiled O3 build (each kernel timed in place, best of 10 runs per kernel) against onnxruntime's own",
             "per-node profile (ORT_ENABLE_ALL, best per node), split into dense work (GEMM and convolution kernels,",
             "with whatever epilogue or prologue they fused) and everything else (elementwise, reductions, softmax,",
             "normalisation, pooling, data movement). *other: ORT / ours* above 1 means our non-dense work is faster.",
             "", "| model | ours dense (ms) | ours other (ms) | ORT dense (ms) | ORT other (ms) | other: ORT / ours |",
             "|---|---|---|---|---|---|"]
    vision_names = [n for n in args.vision.split(",") if n]
    vision = vision_table(vision_names, args) if vision_names else []
    with Progress() as progress:
        task = progress.add_task("benchmarking", total=len(args.names))
        for name in args.names:
            result = bench_zoo_model(name, ("O0", "O3"), args.threads, args.blocks, args.runs, args.budget,
                                     progress=lambda m: progress.update(task, description=m))
            for runtime, t in result.timings.items():
                stats = result.stats.get(runtime.split(" ")[-1], {}) if runtime.startswith("dnnfusion") else {}
                extra = (f" {stats.get('blocks', '')} | {len(stats['fallback_ops'])} | {stats['arena_bytes'] / 1e6:.1f} |"
                         if stats else " | | |")
                lines.append(timing_row(name, runtime, t, result.timings["ORT_ENABLE_ALL"]) + extra)
            if name in args.load_models.split(","):
                result = bench_zoo_model(name, ("O3",), args.threads, args.blocks, args.runs, args.budget, load=1,
                                         peers=(), progress=lambda m: progress.update(task, description=m))
                loaded += [timing_row(name, runtime, t, result.timings["ORT_ENABLE_ALL"])
                           for runtime, t in result.timings.items()]
            progress.update(task, description=f"{name}: per-kernel profile")
            split.append(breakdown_row(name, args.threads))
            progress.advance(task)
    DOC.write_text("\n".join(lines + vision + loaded + split) + "\n")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
