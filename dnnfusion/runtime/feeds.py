"""Run-time input checking, shared by every executor: names, dtypes and shapes of the feeds."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputDtypeError, InputShapeError, MissingInputError
from ..ir import dtypes
from ..ir.graph import Graph


def check_names(names: Sequence[str], feeds: Mapping[str, Any], what: Callable[[str], str]) -> None:
    """Every feed names one of the inputs `names` and every input is fed; `what(name)` says what to feed an input
    (built only for the message)."""
    extra = sorted(set(feeds) - set(names))
    if extra:
        raise MissingInputError(f"unknown input {', '.join(map(repr, extra))}; the model's inputs are "
                                f"{', '.join(map(repr, names))}")
    for name in names:
        if name not in feeds:
            raise MissingInputError(f"input '{name}' is missing: feed {what(name)}")


def check_feeds(inputs: Sequence[Any], feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The feeds as arrays, after checking each against the input of the same name: `inputs` are a graph's input
    values, or anything else with a name, a dtype and a shape (a saved artifact's input specs)."""
    expected = {v.name: v for v in inputs}
    check_names(list(expected), feeds,
                lambda name: f"a {dtypes.name(expected[name].dtype)} array of shape {_fmt(expected[name].shape)}")
    arrays: dict[str, np.ndarray] = {}
    for name, v in expected.items():
        array = np.asarray(feeds[name])
        if array.dtype.newbyteorder("=") == v.dtype and not array.dtype.isnative:
            array = array.astype(v.dtype)                 # the same numbers in the other byte order
        if array.dtype != v.dtype:
            raise InputDtypeError(f"input '{name}' is {dtypes.name(array.dtype)} but the model expects "
                                  f"{dtypes.name(v.dtype)} (shape {_fmt(v.shape)}); convert it with .astype")
        if tuple(array.shape) != tuple(v.shape):
            raise InputShapeError(f"input '{name}' has shape {_fmt(array.shape)} but the model was compiled for "
                                  f"{_fmt(v.shape)}; recompile with input_shapes={{'{name}': ...}} to change it")
        arrays[name] = array
    return arrays


def _fmt(shape: tuple | None) -> str:
    return "?" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"


def random_feeds(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded feeds matching the graph's inputs: normal floats, small non-negative ints, random bools."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for v in graph.inputs:
        kind = np.dtype(v.dtype).kind
        if kind == "b":
            feeds[v.name] = rng.random(v.shape) > 0.5
        elif kind in "iu":
            feeds[v.name] = rng.integers(0, 2, v.shape).astype(v.dtype)
        else:
            feeds[v.name] = rng.standard_normal(v.shape).astype(v.dtype)
    return feeds
