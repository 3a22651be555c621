"""`PYTHON mnn_worker.py --threads T --model M.onnx --feeds F.npz`: MNN on one model, speaking model_worker's
protocol (`ready`, `N` -> the N durations as JSON, `outputs PATH`, `stats`). It imports neither dnnfusion nor
onnxruntime: it runs under the Python of a separate virtual environment holding MNN (DNNFUSION_MNN_PYTHON),
because MNN's `mnnconvert` console script installs a telemetry package into the environment it runs in. The
model is converted here through the converter's module (`_tools.mnnconvert`), which sends nothing, and runs
with MNN's defaults (fp32 on x86, its Winograd 3 x 3 convolutions)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from protocol import serve     # beside this file: run by path, this worker imports nothing of dnnfusion

WARMUP = 3


def load(model: Path, feeds: dict[str, np.ndarray], threads: int, folder: Path):
    """The converted model as a callable returning its outputs by name, and the output names."""
    import _tools  # noqa: PLC0415 - MNN's converter module (the console script would install telemetry)
    import MNN  # noqa: PLC0415
    import onnx  # noqa: PLC0415

    converted = folder / "model.mnn"
    _tools.mnnconvert(["mnnconvert", "-f", "ONNX", "--modelFile", str(model), "--MNNModel", str(converted),
                       "--bizCode", "dnnfusion-bench"])
    if not converted.exists():
        raise RuntimeError(f"MNN could not convert {model}")
    graph = onnx.load(str(model), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    outputs = [o.name for o in graph.output]
    manager = MNN.nn.create_runtime_manager(({"backend": 0, "numThread": threads},))
    module = MNN.nn.load_module_from_file(str(converted), inputs, outputs, runtime_manager=manager,
                                          shape_mutable=False)
    variables = []
    for name in inputs:
        array = np.ascontiguousarray(feeds[name])
        dtype = MNN.expr.int if array.dtype.kind in "iu" else MNN.expr.float
        variables.append(MNN.expr.const(array.astype(np.int32 if dtype == MNN.expr.int else np.float32),
                                        list(array.shape), MNN.expr.NCHW, dtype))

    def run() -> dict[str, np.ndarray]:
        results = module.forward(variables)
        answer = {}
        for name, var in zip(outputs, results):
            if var.data_format == MNN.expr.NC4HW4:
                var = MNN.expr.convert(var, MNN.expr.NCHW)
            answer[name] = np.array(var.read(), copy=True)
        return answer
    return run


def main() -> int:
    """Convert and load, warm up, say `ready`, then answer the parent's commands until its input ends."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--feeds", type=Path, required=True)
    args = parser.parse_args()
    with np.load(args.feeds) as data:
        feeds = {name: data[name] for name in data.files}
    with tempfile.TemporaryDirectory(prefix="dnnfusion-mnn-") as folder:
        answers = os.dup(1)
        os.dup2(2, 1)             # MNN's converter and loader print to standard output: only answers go there
        try:
            run = load(args.model, feeds, max(args.threads, 1), Path(folder))
            for _ in range(WARMUP):
                run()
        except Exception as e:  # noqa: BLE001 - any failure of the peer goes to the parent as one message
            print(f"MNN failed on {args.model}: {e}", file=sys.stderr)
            return 1
        finally:
            sys.stdout.flush()
            os.dup2(answers, 1)
        print("ready", flush=True)
        serve(run, {}, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
