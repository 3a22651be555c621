"""The thread pool (codegen/pool.c) through a small C harness linked against it: every iteration runs exactly once
whatever the team and loop sizes, nested and concurrent loops are correct, a participant that stalls holds up at
most the piece it claimed, and nothing spins once a model's run has returned."""

import ctypes
import threading
import time

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from dnnfusion.codegen.build import build, load
from tests.helpers import FLOAT, make_model

HARNESS = r"""
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>
typedef void (*df_task)(const void* ctx, int64_t lo, int64_t hi);
void df_parallel(df_task fn, const void* ctx, int64_t n, int team);
int df_pool_helpers(void);

struct counts { _Atomic int* hits; int64_t cols; int team; pthread_t caller; _Atomic int* by_helpers; };

static void count(const void* c, int64_t lo, int64_t hi) {
    const struct counts* k = c;
    for (int64_t i = lo; i < hi; ++i) atomic_fetch_add(&k->hits[i], 1);
}
void cover(int64_t n, int team, int* hits) {
    struct counts k = {(_Atomic int*)hits, 0, team, pthread_self(), 0};
    df_parallel(count, &k, n, team);
}

static void rows(const void* c, int64_t lo, int64_t hi) {
    const struct counts* k = c;
    for (int64_t r = lo; r < hi; ++r) {
        struct counts row = {k->hits + r * k->cols, 0, k->team, k->caller, 0};
        df_parallel(count, &row, k->cols, k->team);
    }
}
void cover_nested(int64_t n, int64_t cols, int team, int* hits) {
    struct counts k = {(_Atomic int*)hits, cols, team, pthread_self(), 0};
    df_parallel(rows, &k, n, team);
}

static void stall(const void* c, int64_t lo, int64_t hi) {
    const struct counts* k = c;
    if (!pthread_equal(pthread_self(), k->caller)) {
        usleep(200000);
        atomic_fetch_add(k->by_helpers, (int)(hi - lo));
    }
    for (int64_t i = lo; i < hi; ++i) atomic_fetch_add(&k->hits[i], 1);
}
int cover_with_a_stalling_helper(int64_t n, int team, int* hits) {
    _Atomic int by_helpers = 0;
    struct counts k = {(_Atomic int*)hits, 0, team, pthread_self(), &by_helpers};
    df_parallel(stall, &k, n, team);
    return by_helpers;
}
int helpers(void) { return df_pool_helpers(); }
"""


@pytest.fixture(scope="module")
def harness():
    lib = load(build(HARNESS))
    lib.cover.argtypes = [ctypes.c_int64, ctypes.c_int, ctypes.c_void_p]
    lib.cover_nested.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p]
    lib.cover_with_a_stalling_helper.argtypes = [ctypes.c_int64, ctypes.c_int, ctypes.c_void_p]
    return lib


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1001])
@pytest.mark.parametrize("team", [1, 2, 3, 5])
def test_every_iteration_runs_exactly_once(harness, n, team):
    hits = np.zeros(n, np.int32)
    for _ in range(3):
        harness.cover(n, team, hits.ctypes.data)
    assert (hits == 3).all()


def test_nested_loops_run_inside_their_piece(harness):
    hits = np.zeros((9, 33), np.int32)
    harness.cover_nested(9, 33, 2, hits.ctypes.data)
    assert (hits == 1).all()


def test_concurrent_callers_each_get_every_iteration(harness):
    results = [np.zeros(513, np.int32) for _ in range(4)]

    def work(hits):
        for _ in range(200):
            harness.cover(513, 2, hits.ctypes.data)

    workers = [threading.Thread(target=work, args=(hits,)) for hits in results]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert all((hits == 200).all() for hits in results)


def test_a_stalling_helper_holds_up_only_the_piece_it_claimed(harness):
    """A helper that loses its core in the middle of its first piece (here it sleeps 200 ms): the caller claims
    every other piece (4 per thread: 8 of 64 iterations each), where a static split would leave half to it."""
    hits = np.zeros(64, np.int32)
    started = time.perf_counter()
    by_helpers = harness.cover_with_a_stalling_helper(64, 2, hits.ctypes.data)
    assert (hits == 1).all()
    assert by_helpers <= 8
    assert time.perf_counter() - started < 2.0
    assert harness.helpers() >= 1


def test_nothing_spins_after_a_run_returns():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", FLOAT, [512, 1024])], ["y"])
    compiled = dnnfusion.compile(model, threads=2)
    x = np.ones((512, 1024), np.float32)
    for _ in range(5):
        compiled.run({"x": x})
    before = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - before < 0.03


def test_runs_wake_the_helpers_only_where_they_have_loops_to_share():
    """A model with a parallel loop on two threads wakes the pool's helpers as each run starts (they then sleep
    again once it returns); one on a single thread, or with no loop big enough to share, leaves them asleep."""
    shared = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", FLOAT, [512, 1024])], ["y"])
    tiny = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", FLOAT, [4])], ["y"])
    two, one, small = (dnnfusion.compile(shared, threads=2), dnnfusion.compile(shared, threads=1),
                       dnnfusion.compile(tiny, threads=2))
    assert two.program.parallel and two._wake is not None
    assert one._wake is None and not small.program.parallel and small._wake is None
    x = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(two.run({"x": x})["y"], np.maximum(x, 0))
    before = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - before < 0.03
