"""Honest timing: each runtime in its own worker process, taking turns in blocks of runs; the statistics reported;
busy neighbours that run for the measurement and are gone after it."""

import os
import time

import numpy as np
import onnx
import pytest
from onnx import helper

from dnnfusion.bench.timing import RuntimeWorkers, Timing, busy_neighbours
from dnnfusion.errors import DnnfusionError
from tests.helpers import FLOAT, make_model


def test_timing_statistics_of_a_known_sample():
    t = Timing.of([0.5, 0.1, 0.4, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert (t.best, t.median, t.p90, t.rounds) == (0.1, 0.55, 0.9, 10)
    assert Timing.of([2.0]).p90 == 2.0


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("timing") / "m.onnx"
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    w = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)
    model = make_model(nodes, [("x", FLOAT, [8, 32])], ["y"], initializers={"w": w}, output_type=FLOAT)
    onnx.save(model, path)
    return path, w


def test_each_runtime_runs_in_its_own_process_and_agrees(model_file):
    path, w = model_file
    x = np.random.default_rng(1).standard_normal((8, 32)).astype(np.float32)
    with RuntimeWorkers(["dnnfusion O1", "ORT_ENABLE_ALL"], path, {"x": x}, threads=1) as workers:
        pids = {runtime: proc.pid for runtime, proc in workers._procs.items()}
        ours, theirs = workers.outputs("dnnfusion O1"), workers.outputs("ORT_ENABLE_ALL")
        stats = workers.stats("dnnfusion O1")
        timings = workers.time(blocks=3, runs=4)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    np.testing.assert_allclose(ours["y"], np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(theirs["y"], ours["y"], rtol=1e-5, atol=1e-5)
    assert stats["blocks"] >= 1
    for t in timings.values():
        assert t.rounds == 12 and 0 < t.best <= t.median <= t.p90


def test_a_worker_that_cannot_load_says_why(model_file):
    path, _ = model_file
    with pytest.raises(DnnfusionError, match="unknown runtime 'tvm'"):
        with RuntimeWorkers(["tvm"], path, {"x": np.zeros((8, 32), np.float32)}, threads=1):
            pass


def test_busy_neighbours_burn_cpu_only_while_they_run():
    with busy_neighbours(1):
        start_wall, start = time.perf_counter(), _children_cpu()
        time.sleep(0.4)
    assert time.perf_counter() - start_wall >= 0.4
    assert _children_cpu() - start > 0.1       # a whole core for most of 0.4 s, counted once it is reaped


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def test_mnn_needs_its_own_environment(monkeypatch, tmp_path):
    from dnnfusion.bench.timing import MNN_PYTHON, mnn_python

    monkeypatch.delenv(MNN_PYTHON, raising=False)
    with pytest.raises(DnnfusionError, match="DNNFUSION_MNN_PYTHON=.*bin/python"):
        mnn_python()
    monkeypatch.setenv(MNN_PYTHON, str(tmp_path / "missing" / "python"))
    with pytest.raises(DnnfusionError, match="does not exist"):
        mnn_python()
    python = tmp_path / "python"
    python.write_text("")
    monkeypatch.setenv(MNN_PYTHON, str(python))
    assert mnn_python() == str(python)
