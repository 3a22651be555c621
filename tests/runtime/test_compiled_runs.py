"""CompiledModel.run: graph inputs returned as outputs, concurrent callers, and each model's own thread count."""

import subprocess
import sys
import textwrap

import numpy as np
from onnx import helper

import dnnfusion
from dnnfusion.cache import cache_dir
from tests.helpers import FLOAT, concurrent_mismatches, make_model


def relu_model(outputs):
    return make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", FLOAT, [4])], outputs, output_type=FLOAT)


def test_an_input_that_is_also_an_output_comes_back_unchanged():
    x = np.array([-1, 2, -3, 4], np.float32)
    for outputs in (["y", "x"], ["x", "y"]):
        for level in ("O0", "O3"):
            model = dnnfusion.compile(relu_model(outputs), opt_level=level)
            for _ in range(2):                       # the second run would see the first run's stale memory
                result = model.run({"x": x})
            np.testing.assert_array_equal(result["x"], x)
            np.testing.assert_array_equal(result["y"], np.maximum(x, 0))
            assert not np.shares_memory(result["x"], x)


def test_a_graph_without_nodes_returns_its_input():
    model = dnnfusion.compile(make_model([], [("x", FLOAT, [3])], ["x"], output_type=FLOAT))
    for x in (np.array([1, 2, 3], np.float32), np.array([-5, 6, 7], np.float32)):
        np.testing.assert_array_equal(model.run({"x": x})["x"], x)


def attention_like_model():
    rng = np.random.default_rng(0)
    weights = {"w1": rng.standard_normal((64, 64)).astype(np.float32),
               "w2": rng.standard_normal((64, 64)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"]), helper.make_node("Softmax", ["a"], ["b"], axis=-1),
             helper.make_node("MatMul", ["b", "w2"], ["y"])]
    return make_model(nodes, [("x", FLOAT, [32, 64])], ["y"], weights, output_type=FLOAT)


def test_concurrent_runs_on_one_model_are_each_correct():
    model = dnnfusion.compile(attention_like_model(), threads=2)
    rng = np.random.default_rng(1)
    feeds = [rng.standard_normal((32, 64)).astype(np.float32) for _ in range(6)]
    expected = [model.run({"x": x})["y"] for x in feeds]
    assert concurrent_mismatches(model, feeds, expected, 60) == []


THREAD_COUNT_PROBE = textwrap.dedent("""
    import ctypes, os, numpy as np
    from onnx import helper
    import dnnfusion
    from dnnfusion.codegen.build import pool_library
    from tests.helpers import FLOAT, concurrent_mismatches, make_model

    def big_relu():
        return make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", FLOAT, [512, 1024])], ["y"],
                          output_type=FLOAT)

    def threads_alive():
        return len(os.listdir("/proc/self/task"))

    two = dnnfusion.compile(big_relu(), threads=2)
    one = dnnfusion.compile(big_relu(), threads=1)       # compiled after: must not change `two`'s count
    x = np.ones((512, 1024), np.float32)
    before = threads_alive()
    one.run({"x": x})
    after_one = threads_alive()
    two.run({"x": x})
    after_two = threads_alive()
    two.run({"x": x})
    print(before, after_one, after_two, threads_alive(), ctypes.CDLL(str(pool_library())).df_pool_helpers())
""")


def test_each_model_keeps_its_own_thread_count():
    """The thread pool is one per process and grows to what a model asks: a model compiled with threads=1 starts
    no thread, one with threads=2 adds one helper when it first runs and reuses it after, whatever was compiled
    in between; OpenMP's environment has no say."""
    result = subprocess.run([sys.executable, "-c", THREAD_COUNT_PROBE], capture_output=True, text=True,
                            env={"OMP_NUM_THREADS": "3", "PATH": "/usr/bin:/bin",
                                 "DNNFUSION_CACHE_DIR": cache_dir().as_posix()})
    assert result.returncode == 0, result.stderr
    before, after_one, after_two, after_again, helpers = map(int, result.stdout.split())
    assert after_one == before
    assert after_two == before + 1 == after_again
    assert helpers == 1
