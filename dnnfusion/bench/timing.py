"""Timing that survives a shared machine (DESIGN §5): every runtime in its own worker process (`model_worker`), the
runtimes taking turns in blocks of consecutive runs while the others sit idle, after warmup; the best run of many
is the estimate, the median and 90th percentile are reported beside it; every runtime gets the same threads.
`busy_neighbours` adds a noisy neighbour for the whole measurement."""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import DnnfusionError
from ..oracle import import_onnxruntime



@dataclass(frozen=True)
class Timing:
    best: float                  # seconds
    median: float
    rounds: int                  # timed runs
    p90: float = math.nan

    @classmethod
    def of(cls, samples: Sequence[float]) -> Timing:
        """Best, median and 90th percentile (nearest rank) of run durations in seconds."""
        ordered = sorted(samples)
        return cls(ordered[0], statistics.median(ordered), len(ordered),
                   ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)])


def interleaved(runners: Mapping[str, Callable[[], Any]], rounds: int = 30, warmup: int = 3,
                budget_seconds: float | None = None, settle_seconds: float = 0.005,
                progress: Callable[[int, int], None] = lambda done, total: None) -> dict[str, Timing]:
    """Time each runner once per round, runners in turn, for `rounds` rounds (fewer if `budget_seconds` runs out
    after at least 5); the first `warmup` rounds are not counted. Before each run the harness sleeps
    `settle_seconds`, so that the previous runtime's worker threads (which spin a while after their work)
    have gone idle and do not steal the cores from the next one."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    start = time.perf_counter()
    for r in range(rounds + warmup):
        for name, run in runners.items():
            time.sleep(settle_seconds)
            t = time.perf_counter()
            run()
            if r >= warmup:
                samples[name].append(time.perf_counter() - t)
        progress(r + 1, rounds + warmup)
        if budget_seconds is not None and r >= warmup + 5 and time.perf_counter() - start > budget_seconds:
            break
    return {name: Timing.of(s) for name, s in samples.items()}


def onnxruntime_session(model: Any, threads: int, optimized: bool = True):
    """An onnxruntime CPU session with the given threads (intra-op) and ORT_ENABLE_ALL or ORT_DISABLE_ALL."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])



# Seconds between one runtime's block and the next one's: long enough for the previous runtime's threads (which
# may spin a while after their work) to go idle before the next one is timed.
SETTLE_SECONDS = 0.05
READY_TIMEOUT = 1800.0


MNN_PYTHON = "DNNFUSION_MNN_PYTHON"


def mnn_python() -> str:
    """The Python of the separate environment MNN runs in (`mnn_worker`), from DNNFUSION_MNN_PYTHON."""
    python = os.environ.get(MNN_PYTHON)
    if not python or not Path(python).exists():
        raise DnnfusionError(
            f"MNN runs in a virtual environment of its own (its converter's console script installs a telemetry "
            f"package wherever it runs): python3 -m venv /tmp/mnn && /tmp/mnn/bin/pip install MNN numpy onnx, "
            f"then set {MNN_PYTHON}=/tmp/mnn/bin/python" + (f" ({python} does not exist)" if python else ""))
    return python


class RuntimeWorkers:
    """One `model_worker` process per runtime label (see `model_worker.runner`), all on the same model, feeds and
    thread count. Use as a context manager: entering loads (compiles) each runtime in turn and waits until it is
    ready; leaving ends them."""

    def __init__(self, runtimes: Sequence[str], model: Path | str, feeds: Mapping[str, np.ndarray], threads: int,
                 progress: Callable[[str], None] = lambda message: None) -> None:
        self.runtimes = list(runtimes)
        self.model, self.feeds, self.threads, self.progress = Path(model), dict(feeds), threads, progress
        self._stack = contextlib.ExitStack()
        self._procs: dict[str, subprocess.Popen] = {}
        self._stderr: dict[str, IO[str]] = {}

    def __enter__(self) -> RuntimeWorkers:
        folder = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="dnnfusion-bench-")))
        self._folder = folder
        np.savez(folder / "feeds.npz", **self.feeds)
        try:
            for runtime in self.runtimes:
                self.progress(f"loading {runtime} in its own process")
                self._start(runtime)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, runtime: str) -> None:
        stderr = self._stack.enter_context(tempfile.TemporaryFile("w+"))
        where = ["--threads", str(self.threads), "--model", str(self.model), "--feeds", str(self._folder / "feeds.npz")]
        if runtime == "mnn":
            command = [mnn_python(), str(Path(__file__).with_name("mnn_worker.py")), *where]
        else:
            command = [sys.executable, "-m", "dnnfusion.bench.model_worker", "--runtime", runtime, *where]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                bufsize=1)
        self._procs[runtime], self._stderr[runtime] = proc, stderr
        self._expect(runtime, "ready")

    def _expect(self, runtime: str, word: str | None = None) -> str:
        """The worker's next line (which must be `word` when given); its stderr in the error if it died."""
        line = self._procs[runtime].stdout.readline().strip()
        if not line or (word is not None and line != word):
            self._procs[runtime].wait(timeout=READY_TIMEOUT)
            self._stderr[runtime].seek(0)
            tail = self._stderr[runtime].read().strip()[-2000:]
            raise DnnfusionError(f"the {runtime} worker stopped (status {self._procs[runtime].returncode}):\n{tail}")
        return line

    def _send(self, runtime: str, command: str) -> str:
        self._procs[runtime].stdin.write(command + "\n")
        self._procs[runtime].stdin.flush()
        return self._expect(runtime)

    def outputs(self, runtime: str) -> dict[str, np.ndarray]:
        """One run's outputs of `runtime` (for checking before timing)."""
        path = self._folder / f"outputs{self.runtimes.index(runtime)}.npz"
        self._send(runtime, f"outputs {path}")
        with np.load(path) as data:
            return {name: data[name] for name in data.files}

    def stats(self, runtime: str) -> dict:
        """The compile statistics of a dnnfusion runtime (`{}` for the others)."""
        return json.loads(self._send(runtime, "stats"))

    def time(self, blocks: int = 8, runs: int = 5, budget_seconds: float | None = None,
             progress: Callable[[int, int], None] = lambda done, total: None) -> dict[str, Timing]:
        """`blocks` rounds in which each runtime in turn (the first one rotating) runs `runs` times back to back
        while the others wait idle; fewer blocks if `budget_seconds` runs out after two."""
        samples: dict[str, list[float]] = {runtime: [] for runtime in self.runtimes}
        start = time.perf_counter()
        for b in range(blocks):
            turn = self.runtimes[b % len(self.runtimes):] + self.runtimes[:b % len(self.runtimes)]
            for runtime in turn:
                time.sleep(SETTLE_SECONDS)
                samples[runtime] += [float(t) for t in json.loads(self._send(runtime, str(runs)))]
            progress(b + 1, blocks)
            if budget_seconds is not None and b >= 1 and time.perf_counter() - start > budget_seconds:
                break
        return {runtime: Timing.of(s) for runtime, s in samples.items()}

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs.values():
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for proc in self._procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with contextlib.suppress(OSError):
                proc.stdout.close()
        self._stack.close()


BUSY_LOOP = "import os\nwhile os.getppid() == PARENT:\n    for _ in range(100000): pass\n"


@contextlib.contextmanager
def busy_neighbours(count: int) -> Iterator[None]:
    """`count` processes that each keep one core busy (a noisy neighbour) until the block ends; each also stops by
    itself when its parent is gone."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP.replace("PARENT", str(os.getpid()))])
             for _ in range(max(count, 0))]
    try:
        time.sleep(0.2 if procs else 0.0)
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
