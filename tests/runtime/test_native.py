"""Output buffers recycled between runs: reused only once nothing handed out of them is alive."""


import numpy as np
import pytest
from onnx import helper

import dnnfusion
from dnnfusion.runtime import native
from dnnfusion.runtime.native import OutputBuffers
from tests.helpers import FLOAT, concurrent_mismatches, make_model


def test_a_buffer_is_reused_only_when_no_output_or_view_of_one_is_alive():
    buffers = OutputBuffers([("a", (600, 600), np.float32), ("b", (3,), np.int64)])
    first = buffers.take()
    assert first["a"].shape == (600, 600) and first["b"].dtype == np.int64
    assert first["a"].ctypes.data % native.ALIGN == 0 and first["b"].ctypes.data % native.ALIGN == 0
    assert not np.shares_memory(first["a"], first["b"])
    kept = first["a"][3]                       # a view of one output keeps the whole set busy
    del first
    second = buffers.take()
    assert not np.shares_memory(second["a"], kept)
    held = memoryview(second["b"])
    del second
    third = buffers.take()
    assert not np.shares_memory(third["a"], kept) and not np.shares_memory(third["b"], np.asarray(held))
    address = third["a"].ctypes.data
    del third, kept, held
    assert buffers.take()["a"].ctypes.data in {address} | {s[0].ctypes.data + s[1] for s in buffers._sets}


def test_reused_sets_are_bounded():
    buffers = OutputBuffers([("y", (1000,), np.float32)])
    alive = [buffers.take() for _ in range(5)]
    assert len(buffers._sets) == native.RECYCLED_SETS
    assert len({id(o["y"].base) for o in alive}) == 5


def big_relu():
    return make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", FLOAT, [512, 1024])], ["y"],
                      output_type=FLOAT)


@pytest.fixture(autouse=True)
def recycle_from_a_mebibyte(monkeypatch):
    """Outputs beyond 1 MiB recycled (the rule is the last-level cache's size): big_relu's 2 MiB is."""
    monkeypatch.setattr(native, "recycle_bytes", lambda: 1 << 20)


def test_outputs_a_caller_keeps_are_never_overwritten():
    model = dnnfusion.compile(big_relu(), threads=1)
    assert model._direct is not None and model._direct.buffers is not None
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal((512, 1024)).astype(np.float32) for _ in range(4)]
    kept = [model.run({"x": x})["y"] for x in feeds]
    for _ in range(3):
        model.run({"x": feeds[0]})            # dropped at once: its buffer is reused
    for x, y in zip(feeds, kept):
        np.testing.assert_array_equal(y, np.maximum(x, 0))
    y = None
    for x in feeds:                           # the usual loop: the last result is alive while the next runs
        y = model.run({"x": x})["y"]
        np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_concurrent_runs_with_recycled_outputs_are_each_correct():
    model = dnnfusion.compile(big_relu(), threads=1)
    rng = np.random.default_rng(1)
    feeds = [rng.standard_normal((512, 1024)).astype(np.float32) for _ in range(4)]
    assert concurrent_mismatches(model, feeds, [np.maximum(x, 0) for x in feeds], 20) == []
