"""`python -m dnnfusion.bench.model_worker --runtime R --threads T --model M.onnx --feeds F.npz`: ONE runtime on one
model in this process, driven by its parent over stdin/stdout, so that no other runtime's threads share the
process while it is timed. It prints `ready` once the model is loaded (compiled) and warmed up; then each line
`N` on stdin runs the model N times back to back and answers one JSON line of the N durations in seconds;
`outputs PATH` saves one run's outputs there (an .npz, for the parent's check); `stats` answers the compile
statistics as JSON (dnnfusion only, else `{}`); end of input ends it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DnnfusionError
from .protocol import serve
from .timing import onnxruntime_session

WARMUP = 3
Runner = Callable[[], dict[str, np.ndarray]]


class Loaded:
    """A runtime ready to run: `run()` and, for dnnfusion, the compile statistics."""

    def __init__(self, run: Runner, stats: dict | None = None) -> None:
        self.run, self.stats = run, stats or {}


def _dnnfusion(model: Path, feeds: dict[str, np.ndarray], threads: int, level: str) -> Loaded:
    """A compiled model at `level`, e.g. O3, O3/direct (no Winograd convolutions), O3/tuned (each
    convolution's method measured, `CompileOptions.tune`) or O3/plain (no channel-blocked layouts)."""
    import dnnfusion  # noqa: PLC0415 - the public API, as a user calls it

    shapes = {name: tuple(array.shape) for name, array in feeds.items()}
    opt_level, _, variant = level.partition("/")
    if variant not in ("", "direct", "tuned", "plain"):
        raise DnnfusionError(f"unknown variant '{variant}' of dnnfusion {opt_level}; known: direct (no Winograd), "
                             f"tuned (kernel methods measured), plain (no channel-blocked layouts)")
    compiled = dnnfusion.compile(model, shapes, opt_level=opt_level, threads=threads, winograd=variant != "direct",
                                 tune=variant == "tuned", layouts="off" if variant == "plain" else "auto")
    return Loaded(lambda: compiled.run(feeds), compiled.stats)


def _onnxruntime(model: Path, feeds: dict[str, np.ndarray], threads: int, optimized: bool) -> Loaded:
    session = onnxruntime_session(str(model), threads, optimized=optimized)
    names = [o.name for o in session.get_outputs()]
    return Loaded(lambda: dict(zip(names, session.run(None, feeds))))


def graph_outputs(model: Path) -> list[str]:
    """The model file's graph output names, in order."""
    import onnx  # noqa: PLC0415

    return [o.name for o in onnx.load(str(model), load_external_data=False).graph.output]


def output_name(names: set[str], outputs: Sequence[str]) -> str:
    """The graph output among the tensor names OpenVINO gives a compiled output: it merges names of tensors
    it fused away (a LayerNorm's last Div and the model's `last_hidden_state`), and any one of them may come
    first."""
    return next((n for n in outputs if n in names), min(names))


def _openvino(model: Path, feeds: dict[str, np.ndarray], threads: int) -> Loaded:
    """OpenVINO in float32 (it would otherwise run bf16 where the CPU has it), latency mode."""
    try:
        import openvino as ov  # noqa: PLC0415 - optional peer
    except ImportError as e:
        raise DnnfusionError("openvino is not installed: pip install openvino, or leave it out of the runtimes") from e
    compiled = ov.Core().compile_model(str(model), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                           "PERFORMANCE_HINT": "LATENCY",
                                                           "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    outputs = graph_outputs(model)
    names = [output_name(o.get_names(), outputs) for o in compiled.outputs]

    def run() -> dict[str, np.ndarray]:
        result = request.infer(feeds)
        return {name: np.asarray(result[k]) for k, name in zip(compiled.outputs, names)}
    return Loaded(run)


def runner(runtime: str, model: Path, feeds: dict[str, np.ndarray], threads: int) -> Loaded:
    """The callable for a runtime label: `dnnfusion O3` (any level; `O3/direct` without Winograd),
    `ORT_ENABLE_ALL`, `ORT_DISABLE_ALL`, `openvino`."""
    if runtime.startswith("dnnfusion"):
        return _dnnfusion(model, feeds, threads, runtime.split(" ")[-1] if " " in runtime else "O3")
    if runtime in ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL"):
        return _onnxruntime(model, feeds, threads, runtime == "ORT_ENABLE_ALL")
    if runtime == "openvino":
        return _openvino(model, feeds, threads)
    raise DnnfusionError(f"unknown runtime '{runtime}'; known: dnnfusion O0..O3, ORT_ENABLE_ALL, "
                         f"ORT_DISABLE_ALL, openvino")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """--runtime, --threads, --model, --feeds."""
    parser = argparse.ArgumentParser(prog="python -m dnnfusion.bench.model_worker", description=__doc__)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--feeds", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Load, warm up, say `ready`, serve; a DnnfusionError goes to stderr with status 1."""
    args = parse_args(argv)
    try:
        with np.load(args.feeds) as data:
            feeds = {name: data[name] for name in data.files}
        loaded = runner(args.runtime, args.model, feeds, max(args.threads, 1))
        for _ in range(WARMUP):
            loaded.run()
    except DnnfusionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("ready", flush=True)
    serve(loaded.run, loaded.stats, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
