"""The reference executor against onnxruntime, and feed checking."""

import numpy as np
import pytest

from dnnfusion.errors import InputDtypeError, InputShapeError, MissingInputError
from dnnfusion.pipeline import load
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.runtime import ReferenceExecutor, random_feeds
from dnnfusion.zoo import demo_model

SHAPES = {"x": (2, 12, 64), "mask": (2, 12)}


@pytest.fixture(scope="module")
def executor():
    return ReferenceExecutor(load(demo_model(), SHAPES))


def test_matches_onnxruntime(executor):
    feeds = random_feeds(executor.graph, seed=3)
    feeds["mask"] = (feeds["mask"] > 0).astype(np.float32)
    diffs = compare(executor.run(feeds), run_onnxruntime(demo_model(), feeds))
    assert diffs and all(d.ok for d in diffs), diffs


def test_wrong_shape_names_input_and_expected_shape(executor):
    feeds = random_feeds(executor.graph)
    feeds["x"] = feeds["x"][:, :5]
    with pytest.raises(InputShapeError, match=r"input 'x' has shape \(2, 5, 64\) .* compiled for \(2, 12, 64\)"):
        executor.run(feeds)


def test_wrong_dtype(executor):
    feeds = random_feeds(executor.graph)
    feeds["mask"] = feeds["mask"].astype(np.float64)
    with pytest.raises(InputDtypeError, match="input 'mask' is float64 but the model expects float32"):
        executor.run(feeds)


def test_missing_and_unknown_inputs(executor):
    feeds = random_feeds(executor.graph)
    with pytest.raises(MissingInputError, match="input 'mask' is missing"):
        executor.run({"x": feeds["x"]})
    with pytest.raises(MissingInputError, match="unknown input 'z'"):
        executor.run({**feeds, "z": feeds["x"]})


def test_intermediates_are_released(executor):
    """Each intermediate (and fed input) is dropped after its last consumer, exactly once."""
    released = [v.name for group in executor._release for v in group]
    assert len(released) == len(set(released))
    graph = executor.graph
    expected = {v.name for v in graph.intermediates() if v.consumers} | {v.name for v in graph.inputs}
    assert set(released) == expected
