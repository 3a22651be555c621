"""Random generators: RandomNormal, RandomUniform, their *Like forms, and Bernoulli.

They are never folded at compile time (`deterministic = False`). A `seed` attribute makes the numpy draws
reproducible from run to run; without one every run draws afresh. The draws cannot match another runtime's.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import numpy as np

from ..ir import dtypes
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, shape_of
from .registry import register

Sampler = Callable[[Node, np.random.Generator, tuple], np.ndarray]


def normal(node: Node, rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Draws from N(mean, scale^2)."""
    return rng.normal(float(node.attr("mean", 0.0)), float(node.attr("scale", 1.0)), shape)


def uniform(node: Node, rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Draws from U[low, high)."""
    return rng.uniform(float(node.attr("low", 0.0)), float(node.attr("high", 1.0)), shape)


def generator(node: Node) -> np.random.Generator:
    """A generator seeded by the bits of the float `seed` attribute, or a fresh unseeded one."""
    seed = node.attr("seed")
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(int(np.array(seed, np.float64).view(np.uint64)))


class _Random(Op):
    """A random tensor: the shape and element type come from the node, the values from a sampler."""

    deterministic = False
    sample: ClassVar[Sampler]

    def shape(self, node: Node) -> tuple:
        raise NotImplementedError

    def default_dtype(self, node: Node) -> np.dtype:
        raise NotImplementedError

    def dtype(self, node: Node) -> np.dtype:
        """The output element type: the `dtype` attribute, else the default; it must be a float type."""
        dtype = dtypes.to_numpy(node.attrs["dtype"]) if "dtype" in node.attrs else self.default_dtype(node)
        if not dtypes.is_float(dtype):
            raise self.invalid(node, f"output type {dtypes.name(dtype)} is not a floating-point type")
        return dtype

    def infer(self, node: Node) -> list[Inferred]:
        return [TensorType(self.dtype(node), self.shape(node))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        return [np.asarray(type(self).sample(node, generator(node), self.shape(node))).astype(self.dtype(node))]


class _FromShape(_Random):
    """Shape from the `shape` attribute, float32 unless `dtype` says otherwise."""

    mapping = MappingType.ONE_TO_MANY

    def shape(self, node: Node) -> tuple:
        if "shape" not in node.attrs:
            raise self.invalid(node, "needs the 'shape' attribute")
        shape = tuple(int(d) for d in node.attrs["shape"])
        if any(d < 0 for d in shape):
            raise self.invalid(node, f"shape {shape} has a negative extent")
        return shape

    def default_dtype(self, node: Node) -> np.dtype:
        return np.dtype(np.float32)


class _Like(_Random):
    """Shape (and, unless `dtype` says otherwise, element type) of the input tensor."""

    mapping = MappingType.ONE_TO_ONE

    def shape(self, node: Node) -> tuple:
        return shape_of(node, 0)

    def default_dtype(self, node: Node) -> np.dtype:
        return node.inputs[0].dtype


@register
class RandomNormal(_FromShape):
    """A tensor of the given shape drawn from a normal distribution."""

    op_type = "RandomNormal"
    sample = staticmethod(normal)


@register
class RandomUniform(_FromShape):
    """A tensor of the given shape drawn from a uniform distribution."""

    op_type = "RandomUniform"
    sample = staticmethod(uniform)


@register
class RandomNormalLike(_Like):
    """A tensor shaped like the input, drawn from a normal distribution."""

    op_type = "RandomNormalLike"
    sample = staticmethod(normal)


@register
class RandomUniformLike(_Like):
    """A tensor shaped like the input, drawn from a uniform distribution."""

    op_type = "RandomUniformLike"
    sample = staticmethod(uniform)


@register
class Bernoulli(Op):
    """Each output element is 1 with the probability given by the input element, else 0."""

    op_type = "Bernoulli"
    mapping = MappingType.ONE_TO_ONE
    deterministic = False

    def infer(self, node: Node) -> list[Inferred]:
        p = node.inputs[0]
        if not dtypes.is_float(p.dtype):
            raise self.invalid(node, f"probabilities must be floating-point, not {dtypes.name(p.dtype)}")
        return [TensorType(self.dtype(node), p.shape)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        p = inputs[0]
        return [(generator(node).random(p.shape) < p).astype(self.dtype(node))]

    def dtype(self, node: Node) -> np.dtype:
        return dtypes.to_numpy(node.attrs["dtype"]) if "dtype" in node.attrs else node.inputs[0].dtype
