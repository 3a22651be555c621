"""GEMM kernel benchmark: dnnfusion, onnxruntime and numpy on the matrix products of real models, each runtime in
its own process (`kernel_worker`), the runtimes taking turns block by block, against this CPU's measured FP32 peak."""

from __future__ import annotations

import ctypes
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import DnnfusionError
from ..machine import machine_key

RUNTIMES = ("dnnfusion", "onnxruntime", "numpy")
OPSET = 17
SEED = 20240611
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class GemmShape:
    """One matrix product: `batch` products of (m x k) by (k x n); B is a constant initializer or a graph input."""

    name: str
    m: int
    k: int
    n: int
    batch: int = 1
    constant_b: bool = True

    @property
    def flops(self) -> int:
        """Multiply-adds counted as two floating-point operations each."""
        return 2 * self.batch * self.m * self.k * self.n

    @property
    def label(self) -> str:
        """`MxKxN`, with a `12x ` prefix for a batch of 12."""
        dims = f"{self.m}x{self.k}x{self.n}"
        return f"{self.batch}x {dims}" if self.batch > 1 else dims

    @property
    def a_shape(self) -> tuple[int, ...]:
        return (self.batch, self.m, self.k) if self.batch > 1 else (self.m, self.k)

    @property
    def b_shape(self) -> tuple[int, ...]:
        return (self.batch, self.k, self.n) if self.batch > 1 else (self.k, self.n)

    @property
    def y_shape(self) -> tuple[int, ...]:
        return (self.batch, self.m, self.n) if self.batch > 1 else (self.m, self.n)


SHAPES: tuple[GemmShape, ...] = (
    GemmShape("bert_qkv", 128, 768, 768),
    GemmShape("bert_ffn1", 128, 768, 3072),
    GemmShape("bert_ffn2", 128, 3072, 768),
    GemmShape("attn_scores", 128, 64, 128, batch=12, constant_b=False),
    GemmShape("attn_context", 128, 128, 64, batch=12, constant_b=False),
    GemmShape("tinybert", 128, 312, 1200),
    GemmShape("bert_fused_qkv", 128, 768, 2304),
    GemmShape("gpt2_head", 128, 768, 50257),
    GemmShape("decode_m1", 1, 768, 3072),
    GemmShape("decode_m8", 8, 768, 3072),
    GemmShape("odd", 77, 301, 509),
    GemmShape("odd_small", 13, 45, 37),
)
HEAVY = frozenset({"gpt2_head"})
SHAPES_BY_NAME = {s.name: s for s in SHAPES}


def select_shapes(names: str | None = None, quick: bool = False) -> list[GemmShape]:
    """The shapes named (comma-separated, in the order given), or all of them less the heavy ones under `quick`."""
    if not names:
        return [s for s in SHAPES if not (quick and s.name in HEAVY)]
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in SHAPES_BY_NAME]
    if unknown:
        raise DnnfusionError(f"unknown shape {', '.join(map(repr, unknown))}; known: {', '.join(SHAPES_BY_NAME)}")
    return [SHAPES_BY_NAME[n] for n in wanted]


# ---------------------------------------------------------------------------------------------- models and data

def arrays(shape: GemmShape, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """A and B for `shape`: standard normal float32, the same for every process (fixed seed)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape.a_shape, dtype=np.float32)
    b = rng.standard_normal(shape.b_shape, dtype=np.float32)
    return a, b


def build_model(shape: GemmShape, b: np.ndarray | None = None) -> onnx.ModelProto:
    """One MatMul node (opset 17): A a graph input, B an initializer (constant weights) or a second input."""
    if b is None:
        b = arrays(shape)[1]
    inputs = [helper.make_tensor_value_info("A", TensorProto.FLOAT, list(shape.a_shape))]
    initializers = []
    if shape.constant_b:
        initializers.append(numpy_helper.from_array(b, "B"))
    else:
        inputs.append(helper.make_tensor_value_info("B", TensorProto.FLOAT, list(shape.b_shape)))
    output = helper.make_tensor_value_info("Y", TensorProto.FLOAT, list(shape.y_shape))
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["Y"])], f"gemm_{shape.name}",
                              inputs, [output], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dnnfusion-bench")


def feeds(shape: GemmShape, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """The graph inputs: A, and B too when it is not an initializer."""
    return {"A": a} if shape.constant_b else {"A": a, "B": b}


def input_shapes(shape: GemmShape) -> dict[str, tuple[int, ...]]:
    """The shapes to compile for: A's, and B's when it is a graph input."""
    return {"A": shape.a_shape} if shape.constant_b else {"A": shape.a_shape, "B": shape.b_shape}


def check_output(shape: GemmShape, runtime: str, got: np.ndarray, expected: np.ndarray) -> None:
    """Raise unless `got` matches numpy's product (rtol 1e-3, atol 1e-3 x sqrt(K): the outputs grow as sqrt(K))."""
    atol = 1e-3 * math.sqrt(shape.k)
    got = np.asarray(got)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=atol):
        worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("nan")
        raise DnnfusionError(f"{runtime} gives a wrong product on {shape.name} ({shape.label}): shape "
                             f"{got.shape} vs {expected.shape}, max abs error {worst:.3g} (atol {atol:.3g})")


# ---------------------------------------------------------------------------------------------- the CPU's peak

PEAK_SOURCE = r"""
#ifdef __AVX512F__
typedef float vec __attribute__((vector_size(64)));
#define ACC 16
#else
typedef float vec __attribute__((vector_size(32)));
#define ACC 12
#endif

int peak_lanes(void) { return (int)(sizeof(vec) / sizeof(float)); }
int peak_accumulators(void) { return ACC; }

/* ACC independent chains of vector FMAs: acc = acc * x + y, `iterations` times each. */
float peak_loop(long iterations, float x, float y) {
    vec vx = x + (vec){0}, vy = y + (vec){0}, acc[ACC];
#pragma GCC unroll 16
    for (int i = 0; i < ACC; i++) acc[i] = vy * (float)(i + 1);
    for (long it = 0; it < iterations; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < ACC; i++) acc[i] = acc[i] * vx + vy;
    }
    float sum = 0.0f;
    for (int i = 0; i < ACC; i++)
        for (int l = 0; l < (int)(sizeof(vec) / sizeof(float)); l++) sum += acc[i][l];
    return sum;
}
"""
PEAK_FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-shared", "-fPIC")


@dataclass(frozen=True)
class Peak:
    """One core's measured FP32 FMA throughput and how the loop that measured it was shaped."""

    gflops: float
    accumulators: int
    lanes: int
    compiler: str

    @property
    def method(self) -> str:
        return (f"{self.accumulators} independent {self.lanes}-lane FP32 FMA chains on one core, "
                f"{self.compiler} {' '.join(PEAK_FLAGS[:2])}, best of 5")


def _compile_peak(folder: Path, cc: str) -> ctypes.CDLL:
    """Build the peak loop into `folder` and load it."""
    source, library = folder / "peak.c", folder / "peak.so"
    source.write_text(PEAK_SOURCE)
    try:
        done = subprocess.run([cc, *PEAK_FLAGS, "-o", str(library), str(source)], capture_output=True, text=True)
    except OSError as e:
        raise DnnfusionError(f"C compiler '{cc}' not usable ({e}); install gcc or set CC") from e
    if done.returncode != 0:
        raise DnnfusionError(f"'{cc}' could not build the peak loop: {done.stderr.strip()[-500:]}")
    return ctypes.CDLL(str(library))


def _time_loop(loop: Callable[[int], float], iterations: int) -> float:
    """Seconds for one call of the loop."""
    start = time.perf_counter()
    loop(iterations)
    return time.perf_counter() - start


@functools.cache
def measure_peak(cc: str | None = None, runs: int = 5, min_seconds: float = 0.05) -> Peak:
    """Compile the FMA loop (in a temporary folder, `CC` or gcc), size it to `min_seconds`, keep the best run."""
    cc = cc or os.environ.get("CC", "gcc")
    with tempfile.TemporaryDirectory(prefix="dnnfusion-peak-") as folder:
        lib = _compile_peak(Path(folder), cc)
        lib.peak_loop.argtypes = [ctypes.c_long, ctypes.c_float, ctypes.c_float]
        lib.peak_loop.restype = ctypes.c_float
        lanes, accumulators = lib.peak_lanes(), lib.peak_accumulators()

        def loop(n: int) -> float:
            return lib.peak_loop(n, 0.999999, 1e-6)

        iterations = 1 << 16
        while _time_loop(loop, iterations) < min_seconds / 4:
            iterations *= 2
        iterations *= 4
        best = min(_time_loop(loop, iterations) for _ in range(runs))
    return Peak(iterations * accumulators * lanes * 2 / best / 1e9, accumulators, lanes, cc)


def peak_gflops() -> float:
    """This CPU's measured FP32 FMA throughput on one core, in GFLOP/s."""
    return measure_peak().gflops


# ---------------------------------------------------------------------------------------------- the workers

def worker_env(runtime: str, threads: int) -> dict[str, str]:
    """The worker's environment: this one, with the BLAS thread count set to `threads` for numpy's worker and
    to 1 for the others (whose one reference product must not leave OpenBLAS threads spinning on the cores
    the timed runtime needs)."""
    env = dict(os.environ)
    if runtime == "numpy":
        env.update({name: str(threads) for name in BLAS_THREAD_VARIABLES})
    else:                             # OMP_NUM_THREADS stays: dnnfusion's OpenMP sets its own count per call
        env.update({name: "1" for name in BLAS_THREAD_VARIABLES if name != "OMP_NUM_THREADS"})
    return env


def _stderr_tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output on stderr)"


def run_worker(runtime: str, threads: int, rounds: int, shapes: list[GemmShape],
               timeout: float | None = None) -> dict[str, list[float]]:
    """Time `runtime` on `shapes` in a process of its own: {shape name: [seconds per run]}."""
    command = [sys.executable, "-m", "dnnfusion.bench.kernel_worker", "--runtime", runtime, "--threads",
               str(threads), "--rounds", str(rounds), "--shapes", ",".join(s.name for s in shapes)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=worker_env(runtime, threads),
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise DnnfusionError(f"the {runtime} worker ran past {timeout} s") from e
    if done.returncode != 0:
        raise DnnfusionError(f"the {runtime} worker ({threads} thread(s)) exited with status {done.returncode}:\n"
                             f"{_stderr_tail(done.stderr)}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        samples = json.loads(lines[-1])
    except (IndexError, ValueError) as e:
        raise DnnfusionError(f"the {runtime} worker printed no JSON result:\n{_stderr_tail(done.stderr)}") from e
    return {name: [float(t) for t in times] for name, times in samples.items()}


# ---------------------------------------------------------------------------------------------- results

@dataclass
class KernelResult:
    """Every runtime's samples (seconds per run, all blocks) for one shape at one thread count."""

    shape: GemmShape
    threads: int
    samples: dict[str, list[float]] = field(default_factory=dict)

    def best(self, runtime: str) -> float:
        return min(self.samples[runtime])

    def median(self, runtime: str) -> float:
        return statistics.median(self.samples[runtime])

    def gflops(self, runtime: str) -> float:
        """GFLOP/s of the best run."""
        return self.shape.flops / self.best(runtime) / 1e9

    def speedup(self, other: str) -> float:
        """dnnfusion's speed over `other`'s (best against best): above 1, dnnfusion is faster."""
        return self.best(other) / self.best("dnnfusion")

    def to_dict(self, peak: float) -> dict:
        """The raw numbers: per runtime best and median seconds and GFLOP/s, and every sample."""
        runtimes = {r: {"best_s": self.best(r), "median_s": self.median(r), "best_gflops": self.gflops(r),
                        "median_gflops": self.shape.flops / self.median(r) / 1e9, "samples_s": s}
                    for r, s in self.samples.items()}
        out = {"shape": self.shape.name, "m": self.shape.m, "k": self.shape.k, "n": self.shape.n,
               "batch": self.shape.batch, "constant_b": self.shape.constant_b, "flops": self.shape.flops,
               "threads": self.threads, "runtimes": runtimes}
        if "dnnfusion" in self.samples:
            out["percent_of_peak"] = 100 * self.gflops("dnnfusion") / (peak * self.threads)
            out.update({f"vs_{r}": self.speedup(r) for r in self.samples if r != "dnnfusion"})
        return out


@dataclass
class KernelReport:
    """The whole run: the measured peak, the machine, and one result per shape and thread count."""

    peak: Peak
    machine: str
    rounds: int
    blocks: int
    results: list[KernelResult]

    @property
    def cpu(self) -> str:
        """The machine key less its thread count: the CPU model and the ISA extensions."""
        return self.machine.split(" | threads=")[0]

    def to_dict(self) -> dict:
        return {"machine": self.machine, "cpu": self.machine.split(" | ")[0],
                "peak_gflops_per_core": self.peak.gflops, "peak_method": self.peak.method,
                "rounds": self.rounds, "blocks": self.blocks,
                "results": [r.to_dict(self.peak.gflops) for r in self.results]}

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def bench_kernels(shapes: list[GemmShape], threads: list[int], rounds: int = 10, blocks: int = 3,
                  progress: Callable[[str], None] = lambda message: None,
                  runtimes: tuple[str, ...] = RUNTIMES) -> KernelReport:
    """Measure the peak, then per thread count `blocks` blocks in which every runtime's worker times every shape."""
    progress("measuring the FMA peak")
    peak = measure_peak()
    results = {(t, s.name): KernelResult(s, t) for t in threads for s in shapes}
    for t in threads:
        for block in range(blocks):
            for runtime in runtimes:
                progress(f"{t} thread(s), block {block + 1}/{blocks}: {runtime}")
                for name, times in run_worker(runtime, t, rounds, shapes).items():
                    results[(t, name)].samples.setdefault(runtime, []).extend(times)
    return KernelReport(peak, machine_key(), rounds, blocks, list(results.values()))


# ---------------------------------------------------------------------------------------------- tables

HEADERS = ("shape", "MxKxN", "threads", "dnnfusion GFLOP/s", "% of peak", "onnxruntime GFLOP/s", "numpy GFLOP/s",
           "vs ORT", "vs numpy", "dnnfusion median ms")


def table_rows(report: KernelReport) -> list[list[str]]:
    """One row of text per shape and thread count, in HEADERS' order."""
    rows = []
    for r in report.results:
        rows.append([r.shape.name, r.shape.label, str(r.threads), f"{r.gflops('dnnfusion'):.1f}",
                     f"{100 * r.gflops('dnnfusion') / (report.peak.gflops * r.threads):.0f}%",
                     f"{r.gflops('onnxruntime'):.1f}", f"{r.gflops('numpy'):.1f}",
                     f"{r.speedup('onnxruntime'):.2f}x", f"{r.speedup('numpy'):.2f}x",
                     f"{r.median('dnnfusion') * 1e3:.3f}"])
    return rows


def caption(report: KernelReport) -> str:
    """How the figures were made, for under the table."""
    return (f"peak {report.peak.gflops:.1f} GFLOP/s per core ({report.peak.method}); % of peak = dnnfusion / "
            f"(peak x threads); vs X = X's best time / dnnfusion's (>1: dnnfusion faster); best of "
            f"{report.blocks} block(s) x {report.rounds} run(s), each runtime in its own process; {report.cpu}")


def markdown(report: KernelReport) -> str:
    """The table as Markdown, with the caption under it."""
    lines = ["# GEMM kernels", "", "Generated by `dnnfusion bench-kernels --markdown F`; do not edit by hand. Single-MatMul "
             "models (B a constant initializer unless batched) in dnnfusion and onnxruntime (ORT_ENABLE_ALL), and "
             "numpy's `@`, GFLOP/s of the best run.", "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    return "\n".join(lines) + f"\n\n{caption(report)}\n"
