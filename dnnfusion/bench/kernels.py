"""Kernel benchmark: dnnfusion, onnxruntime and numpy on the matrix products and convolutions of real models (numpy
on the products only), each runtime in its own process (`kernel_worker`), the runtimes taking turns block by block,
against this CPU's measured FP32 peak."""

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
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import DnnfusionError
from ..kernels.window import Window
from ..machine import machine_key
from ..ops.conv import channel_column, convolve, deconvolve

RUNTIMES = ("dnnfusion", "onnxruntime", "numpy")
OPSET = 17
SEED = 20240611
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
Arrays = tuple[np.ndarray, ...]


class KernelCase(ABC):
    """One benchmark case: a single-node float32 ONNX model (output Y), its data, and numpy's answer to check every
    runtime against. GemmShape and ConvShape implement it; the workers and tables see only this interface."""

    name: str
    kind: ClassVar[str]
    runtimes: ClassVar[tuple[str, ...]] = RUNTIMES

    @property
    @abstractmethod
    def label(self) -> str:
        """The case in a few characters, for the tables."""

    @property
    @abstractmethod
    def flops(self) -> int:
        """Multiply-adds counted as two floating-point operations each."""

    @property
    @abstractmethod
    def depth(self) -> int:
        """Products summed into each output element (the outputs' spread grows as its square root)."""

    @property
    @abstractmethod
    def y_shape(self) -> tuple[int, ...]:
        """The output's shape."""

    @abstractmethod
    def arrays(self, seed: int = SEED) -> Arrays:
        """Inputs and weights: standard normal float32, the same in every process (fixed seed)."""

    @abstractmethod
    def node(self) -> onnx.NodeProto:
        """The model's one node, writing Y."""

    @abstractmethod
    def feeds(self, data: Arrays) -> dict[str, np.ndarray]:
        """The graph inputs, by name."""

    @abstractmethod
    def initializers(self, data: Arrays) -> dict[str, np.ndarray]:
        """The constant weights, by name."""

    @abstractmethod
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of the graph inputs, to compile for."""

    @abstractmethod
    def reference(self, data: Arrays) -> np.ndarray:
        """The expected output, computed with numpy."""

    def params(self) -> dict:
        """The dataclass fields less the name, for the JSON report."""
        return {k: v for k, v in asdict(self).items() if k != "name"}

    def model(self, data: Arrays) -> onnx.ModelProto:
        """The single-node model (opset 17): the feeds as graph inputs, the initializers as constants."""
        inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape))
                  for name, array in self.feeds(data).items()]
        constants = [numpy_helper.from_array(a, n) for n, a in self.initializers(data).items()]
        output = helper.make_tensor_value_info("Y", TensorProto.FLOAT, list(self.y_shape))
        graph = helper.make_graph([self.node()], f"{self.kind}_{self.name}", inputs, [output], constants)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dnnfusion-bench")

    def check(self, runtime: str, got: np.ndarray, expected: np.ndarray) -> None:
        """Raise unless `got` matches numpy's answer (rtol 1e-3, atol 1e-3 x sqrt(depth))."""
        atol = 1e-3 * math.sqrt(self.depth)
        got = np.asarray(got)
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=atol):
            worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("nan")
            raise DnnfusionError(f"{runtime} gives a wrong output on {self.name} ({self.label}): shape "
                                 f"{got.shape} vs {expected.shape}, max abs error {worst:.3g} (atol {atol:.3g})")


def _standard_normal(seed: int, *shapes: tuple[int, ...]) -> Arrays:
    """One float32 standard normal array per shape, from one generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape, dtype=np.float32) for shape in shapes)


def _dims(extents: tuple[int, ...]) -> str:
    """`3x3`, `8x28x28`: extents joined by x."""
    return "x".join(map(str, extents))


@dataclass(frozen=True)
class GemmShape(KernelCase):
    """One matrix product: `batch` products of (m x k) by (k x n); B is a constant initializer or a graph input."""

    name: str
    m: int
    k: int
    n: int
    batch: int = 1
    constant_b: bool = True
    kind: ClassVar[str] = "gemm"

    @property
    def flops(self) -> int:
        """Multiply-adds counted as two floating-point operations each."""
        return 2 * self.batch * self.m * self.k * self.n

    @property
    def depth(self) -> int:
        return self.k

    @property
    def label(self) -> str:
        """`MxKxN`, with a `12x ` prefix for a batch of 12."""
        dims = _dims((self.m, self.k, self.n))
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

    def arrays(self, seed: int = SEED) -> Arrays:
        """A and B."""
        return _standard_normal(seed, self.a_shape, self.b_shape)

    def node(self) -> onnx.NodeProto:
        return helper.make_node("MatMul", ["A", "B"], ["Y"])

    def feeds(self, data: Arrays) -> dict[str, np.ndarray]:
        """A, and B too when it is not an initializer."""
        a, b = data
        return {"A": a} if self.constant_b else {"A": a, "B": b}

    def initializers(self, data: Arrays) -> dict[str, np.ndarray]:
        """B when it is constant."""
        return {"B": data[1]} if self.constant_b else {}

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"A": self.a_shape} if self.constant_b else {"A": self.a_shape, "B": self.b_shape}

    def reference(self, data: Arrays) -> np.ndarray:
        """numpy's product (batched for batched shapes); numpy's worker times exactly this."""
        a, b = data
        return np.matmul(a, b)


@dataclass(frozen=True)
class ConvShape(KernelCase):
    """One Conv node: batch 1, NCHW (or NCDHW), weights and bias as initializers; `pads` in ONNX order (begins, then
    ends), by default kernel // 2 on each side ("same" for odd kernels at stride 1). numpy has no convolution."""

    name: str
    channels: int
    out_channels: int
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: int = 1
    group: int = 1
    pads: tuple[int, ...] | None = None
    kind: ClassVar[str] = "conv"
    runtimes: ClassVar[tuple[str, ...]] = ("dnnfusion", "onnxruntime")

    def __post_init__(self) -> None:
        """Reject geometry that no Conv node could have."""
        rank = len(self.spatial)
        if len(self.kernel) != rank or len(self.onnx_pads) != 2 * rank or self.channels % self.group \
                or self.out_channels % self.group or min(self.window.out, default=0) < 1:
            raise ValueError(f"{self.name}: no convolution of {self.channels}->{self.out_channels} channels, kernel "
                             f"{self.kernel}, group {self.group}, pads {self.onnx_pads} over {self.spatial}")

    @property
    def onnx_pads(self) -> tuple[int, ...]:
        return self.pads if self.pads is not None else tuple(k // 2 for k in self.kernel) * 2

    @property
    def window(self) -> Window:
        """Where the kernel visits the input: strides, pads and output extents."""
        rank = len(self.spatial)
        begin, end = self.onnx_pads[:rank], self.onnx_pads[rank:]
        out = tuple((size + b + e - k) // self.stride + 1
                    for size, b, e, k in zip(self.spatial, begin, end, self.kernel))
        return Window(self.kernel, (self.stride,) * rank, (1,) * rank, begin, end, out)

    @property
    def depthwise(self) -> bool:
        return self.group > 1 and self.group == self.channels == self.out_channels

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (1, self.channels, *self.spatial)

    @property
    def w_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.channels // self.group, *self.kernel)

    @property
    def y_shape(self) -> tuple[int, ...]:
        return (1, self.out_channels, *self.window.out)

    @property
    def depth(self) -> int:
        return self.channels // self.group * math.prod(self.kernel)

    @property
    def flops(self) -> int:
        """Two per multiply-add: output elements x (channels / group) x kernel taps; the bias is not counted."""
        return 2 * math.prod(self.y_shape) * self.depth

    @property
    def label(self) -> str:
        """`64->64 3x3 s1 56x56` (the input's spatial extents); `dw240 5x5 s2 28x28` for a depthwise one."""
        if self.depthwise:
            head = f"dw{self.channels}"
        else:
            head = f"{self.channels}->{self.out_channels}" + (f" g{self.group}" if self.group > 1 else "")
        return f"{head} {_dims(self.kernel)} s{self.stride} {_dims(self.spatial)}"

    def arrays(self, seed: int = SEED) -> Arrays:
        """X, W and the bias."""
        return _standard_normal(seed, self.x_shape, self.w_shape, (self.out_channels,))

    def node(self) -> onnx.NodeProto:
        rank = len(self.spatial)
        return helper.make_node("Conv", ["X", "W", "B"], ["Y"], kernel_shape=list(self.kernel),
                                strides=[self.stride] * rank, pads=list(self.onnx_pads), group=self.group)

    def feeds(self, data: Arrays) -> dict[str, np.ndarray]:
        return {"X": data[0]}

    def initializers(self, data: Arrays) -> dict[str, np.ndarray]:
        return {"W": data[1], "B": data[2]}

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"X": self.x_shape}

    def reference(self, data: Arrays) -> np.ndarray:
        """dnnfusion's numpy convolution (im2col and a matmul, float32) plus the bias."""
        x, w, bias = data
        return convolve(x, w, self.window, self.group) + channel_column(bias, x.ndim)


@dataclass(frozen=True)
class ConvTransposeShape(ConvShape):
    """One ConvTranspose node: weights (C, M / group, *kernel) and bias as initializers, `pads` (ONNX order)
    cropping the full output, by default none (U-Net's 2 x 2 stride-2 upsampling)."""

    kind: ClassVar[str] = "conv_transpose"

    @property
    def onnx_pads(self) -> tuple[int, ...]:
        return self.pads if self.pads is not None else (0,) * (2 * len(self.spatial))

    @property
    def window(self) -> Window:
        """The kernel's placement: output extents stride x (input - 1) + kernel less the pads."""
        rank = len(self.spatial)
        begin, end = self.onnx_pads[:rank], self.onnx_pads[rank:]
        out = tuple(self.stride * (size - 1) + k - b - e
                    for size, b, e, k in zip(self.spatial, begin, end, self.kernel))
        return Window(self.kernel, (self.stride,) * rank, (1,) * rank, begin, end, out)

    @property
    def w_shape(self) -> tuple[int, ...]:
        return (self.channels, self.out_channels // self.group, *self.kernel)

    @property
    def depth(self) -> int:
        """Products summed into one output at most: channels per group x taps that overlap there."""
        return self.channels // self.group * math.prod(-(-k // self.stride) for k in self.kernel)

    @property
    def flops(self) -> int:
        """Two per multiply-add: input elements x (output channels / group) x kernel taps; the bias not counted."""
        return 2 * math.prod(self.x_shape) * self.out_channels // self.group * math.prod(self.kernel)

    @property
    def label(self) -> str:
        """`up 128->64 2x2 s2 128x128` (the input's spatial extents)."""
        return "up " + super().label

    def node(self) -> onnx.NodeProto:
        rank = len(self.spatial)
        return helper.make_node("ConvTranspose", ["X", "W", "B"], ["Y"], kernel_shape=list(self.kernel),
                                strides=[self.stride] * rank, pads=list(self.onnx_pads), group=self.group)

    def reference(self, data: Arrays) -> np.ndarray:
        """dnnfusion's numpy transposed convolution (a matmul, then the taps scattered) plus the bias."""
        x, w, bias = data
        return deconvolve(x, w, self.window, (0,) * len(self.spatial), self.group) + channel_column(bias, x.ndim)


def conv2d(name: str, channels: int, out_channels: int, kernel: int, stride: int, size: int) -> ConvShape:
    """A square 2-D convolution over a square input."""
    return ConvShape(name, channels, out_channels, (size, size), (kernel, kernel), stride)


def depthwise(name: str, channels: int, kernel: int, stride: int, size: int) -> ConvShape:
    """A square depthwise convolution (group = channels, weights (C, 1, k, k)) over a square input."""
    return ConvShape(name, channels, channels, (size, size), (kernel, kernel), stride, group=channels)


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
CONV_SHAPES: tuple[ConvShape, ...] = (
    conv2d("conv3x3_56", 64, 64, 3, 1, 56),                        # ResNet-50
    conv2d("resnet_1x1_56", 256, 64, 1, 1, 56),
    conv2d("resnet_3x3_s2", 128, 128, 3, 2, 56),
    conv2d("ssd_head", 512, 273, 3, 1, 19),
    conv2d("unet_3x3", 64, 64, 3, 1, 256),
    conv2d("vgg_3x3_28", 512, 512, 3, 1, 28),
    conv2d("yolo_3x3_52", 128, 256, 3, 1, 52),                     # YOLOv4
    conv2d("yolo_1x1_52", 256, 128, 1, 1, 52),
    conv2d("yolo_stem_s2", 32, 64, 3, 2, 208),
    ConvShape("c3d", 64, 128, (8, 28, 28), (3, 3, 3)),             # C3D
    ConvShape("c3d_stem", 3, 64, (16, 112, 112), (3, 3, 3)),
    ConvShape("s3d_1x3x3", 64, 192, (8, 56, 56), (1, 3, 3)),       # S3D's spatial half
    conv2d("effnet_stem", 3, 32, 3, 2, 224),                       # EfficientNet-B0
    depthwise("dw3_s1_112", 32, 3, 1, 112),                        # EfficientNet-B0
    depthwise("dw3_s2_112", 96, 3, 2, 112),
    depthwise("dw5_s1_28", 240, 5, 1, 28),
    depthwise("dw5_s2_28", 240, 5, 2, 28),
    depthwise("dw3_s1_14", 480, 3, 1, 14),
    depthwise("dw5_s1_7", 1152, 5, 1, 7),
    conv2d("effnet_1x1_7", 320, 1280, 1, 1, 7),
    conv2d("effnet_1x1_14", 672, 112, 1, 1, 14),
    ConvTransposeShape("unet_up_128", 128, 64, (128, 128), (2, 2), 2),   # U-Net's upsampling
    ConvTransposeShape("unet_up_16", 1024, 512, (16, 16), (2, 2), 2),
    ConvTransposeShape("deconv4_s2", 128, 64, (32, 32), (4, 4), 2, pads=(1, 1, 1, 1)),
)
ALL_SHAPES: tuple[KernelCase, ...] = SHAPES + CONV_SHAPES
HEAVY = frozenset({"gpt2_head", "unet_3x3", "vgg_3x3_28", "c3d", "c3d_stem", "s3d_1x3x3"})
SHAPES_BY_NAME: dict[str, KernelCase] = {s.name: s for s in ALL_SHAPES}


def select_shapes(names: str | None = None, quick: bool = False) -> list[KernelCase]:
    """The cases named (comma-separated, in the order given), or all of them less the heavy ones under `quick`."""
    if not names:
        return [s for s in ALL_SHAPES if not (quick and s.name in HEAVY)]
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in SHAPES_BY_NAME]
    if unknown:
        raise DnnfusionError(f"unknown shape {', '.join(map(repr, unknown))}; known: {', '.join(SHAPES_BY_NAME)}")
    return [SHAPES_BY_NAME[n] for n in wanted]


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


def run_worker(runtime: str, threads: int, rounds: int, shapes: list[KernelCase],
               timeout: float | None = None) -> dict[str, list[float]]:
    """Time `runtime` on those of `shapes` it can run in a process of its own: {shape name: [seconds per run]};
    no process at all when it can run none of them (numpy on convolutions)."""
    shapes = [s for s in shapes if runtime in s.runtimes]
    if not shapes:
        return {}
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
    """Every runtime's samples (seconds per run, all blocks) for one shape at one thread count; a runtime that did
    not time the shape (numpy on a convolution) has no samples, and its figures are None."""

    shape: KernelCase
    threads: int
    samples: dict[str, list[float]] = field(default_factory=dict)

    def best(self, runtime: str) -> float:
        return min(self.samples[runtime])

    def median(self, runtime: str) -> float:
        return statistics.median(self.samples[runtime])

    def median_ms(self, runtime: str) -> float | None:
        """Milliseconds of the median run."""
        return self.median(runtime) * 1e3 if runtime in self.samples else None

    def gflops(self, runtime: str) -> float | None:
        """GFLOP/s of the best run."""
        return self.shape.flops / self.best(runtime) / 1e9 if runtime in self.samples else None

    def percent_of_peak(self, peak: float) -> float | None:
        """dnnfusion's best GFLOP/s against `peak` (per core) times the threads."""
        gflops = self.gflops("dnnfusion")
        return None if gflops is None else 100 * gflops / (peak * self.threads)

    def speedup(self, other: str) -> float | None:
        """dnnfusion's speed over `other`'s (best against best): above 1, dnnfusion is faster."""
        if other not in self.samples or "dnnfusion" not in self.samples:
            return None
        return self.best(other) / self.best("dnnfusion")

    def to_dict(self, peak: float) -> dict:
        """The raw numbers: per runtime that timed the shape best and median seconds and GFLOP/s, every sample."""
        runtimes = {r: {"best_s": self.best(r), "median_s": self.median(r), "best_gflops": self.gflops(r),
                        "median_gflops": self.shape.flops / self.median(r) / 1e9, "samples_s": s}
                    for r, s in self.samples.items()}
        out = {"shape": self.shape.name, "kind": self.shape.kind, "label": self.shape.label, **self.shape.params(),
               "flops": self.shape.flops, "threads": self.threads, "runtimes": runtimes}
        if "dnnfusion" in self.samples:
            out["percent_of_peak"] = self.percent_of_peak(peak)
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


def bench_kernels(shapes: list[KernelCase], threads: list[int], rounds: int = 10, blocks: int = 3,
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

HEADERS = ("case", "shape", "threads", "dnnfusion GFLOP/s", "% of peak", "onnxruntime GFLOP/s", "numpy GFLOP/s",
           "vs ORT", "vs numpy", "dnnfusion median ms")


NOT_TIMED = "\u2014"


def cell(value: float | None, spec: str, suffix: str = "") -> str:
    """`value` formatted for a table, or an em dash where the runtime did not time the case."""
    return NOT_TIMED if value is None else f"{value:{spec}}{suffix}"


def table_rows(report: KernelReport) -> list[list[str]]:
    """One row of text per shape and thread count, in HEADERS' order."""
    return [[r.shape.name, r.shape.label, str(r.threads), cell(r.gflops("dnnfusion"), ".1f"),
             cell(r.percent_of_peak(report.peak.gflops), ".0f", "%"), cell(r.gflops("onnxruntime"), ".1f"),
             cell(r.gflops("numpy"), ".1f"), cell(r.speedup("onnxruntime"), ".2f", "x"),
             cell(r.speedup("numpy"), ".2f", "x"), cell(r.median_ms("dnnfusion"), ".3f")]
            for r in report.results]


def caption(report: KernelReport) -> str:
    """How the figures were made, for under the table."""
    return (f"peak {report.peak.gflops:.1f} GFLOP/s per core ({report.peak.method}); % of peak = dnnfusion / "
            f"(peak x threads); vs X = X's best time / dnnfusion's (>1: dnnfusion faster); {NOT_TIMED}: not timed; "
            f"best of {report.blocks} block(s) x {report.rounds} run(s), each runtime in its own process; {report.cpu}")


INTRO = ("Generated by `dnnfusion bench-kernels --markdown F`; do not edit by hand. GFLOP/s of the best run in "
         "dnnfusion, onnxruntime (ORT_ENABLE_ALL) and numpy. The GEMM rows are single-MatMul models (B a constant "
         "initializer unless batched), numpy timing `@`; the convolution rows are single-Conv models (batch 1, NCHW "
         "or NCDHW, weights and bias as initializers, pads kernel // 2), whose FLOPs count 2 x output elements x "
         "input channels per group x kernel taps, the bias left out. numpy has no convolution and is not timed on "
         f"them ({NOT_TIMED}).")


def markdown(report: KernelReport) -> str:
    """The table as Markdown, with the caption under it."""
    lines = ["# GEMM and convolution kernels", "", INTRO, "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    return "\n".join(lines) + f"\n\n{caption(report)}\n"
