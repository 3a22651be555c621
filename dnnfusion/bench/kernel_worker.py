"""`python -m dnnfusion.bench.kernel_worker --runtime R --threads T --rounds N --shapes a,b`: time ONE runtime on
benchmark cases in this process and print one JSON line `{shape: [seconds, ...]}`; the cases the runtime cannot run
(numpy has no convolution) are left out of it. numpy's BLAS thread count comes from the environment the parent sets
(OPENBLAS_NUM_THREADS and friends), read when numpy is first loaded."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Sequence

from ..errors import DnnfusionError
from .kernels import RUNTIMES, Arrays, KernelCase, select_shapes
from .timing import onnxruntime_session

WARMUP = 3


def _dnnfusion_runner(shape: KernelCase, threads: int, data: Arrays) -> Callable[[], Any]:
    """Compile the case's model with dnnfusion at `threads`; check its output once against numpy's."""
    import dnnfusion  # noqa: PLC0415

    model = dnnfusion.compile(shape.model(data), shape.input_shapes(), threads=threads)
    inputs = shape.feeds(data)
    shape.check("dnnfusion", model.run(inputs)["Y"], shape.reference(data))
    return lambda: model.run(inputs)


def _onnxruntime_runner(shape: KernelCase, threads: int, data: Arrays) -> Callable[[], Any]:
    """An onnxruntime session (ORT_ENABLE_ALL) at `threads`; its output checked once too."""
    session = onnxruntime_session(shape.model(data), threads, optimized=True)
    inputs = shape.feeds(data)
    shape.check("onnxruntime", session.run(None, inputs)[0], shape.reference(data))
    return lambda: session.run(None, inputs)


def _numpy_runner(shape: KernelCase, threads: int, data: Arrays) -> Callable[[], Any]:
    """The reference itself (np.matmul); threads come from the BLAS environment variables."""
    reference = shape.reference
    return lambda: reference(data)


RUNNERS: dict[str, Callable[[KernelCase, int, Arrays], Callable[[], Any]]] = {
    "dnnfusion": _dnnfusion_runner, "onnxruntime": _onnxruntime_runner, "numpy": _numpy_runner}


def time_runner(run: Callable[[], Any], rounds: int, warmup: int = WARMUP) -> list[float]:
    """`warmup` untimed runs, then the seconds of each of `rounds` runs."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def time_shapes(runtime: str, threads: int, rounds: int, shapes: Sequence[KernelCase]) -> dict[str, list[float]]:
    """Build each shape's model or arrays once, then time it: {shape name: [seconds per run]}, without the shapes
    that `runtime` cannot run."""
    if runtime not in RUNNERS:
        raise DnnfusionError(f"unknown runtime '{runtime}'; known: {', '.join(RUNNERS)}")
    return {shape.name: time_runner(RUNNERS[runtime](shape, threads, shape.arrays()), rounds)
            for shape in shapes if runtime in shape.runtimes}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """--runtime, --threads, --rounds, --shapes."""
    parser = argparse.ArgumentParser(prog="python -m dnnfusion.bench.kernel_worker", description=__doc__)
    parser.add_argument("--runtime", required=True, choices=RUNTIMES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--shapes", default="", help="comma-separated shape names (default: all)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Time and print the JSON line; a DnnfusionError (a wrong product, say) goes to stderr with status 1."""
    args = parse_args(argv)
    try:
        samples = time_shapes(args.runtime, max(args.threads, 1), max(args.rounds, 1), select_shapes(args.shapes))
    except DnnfusionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(samples), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
