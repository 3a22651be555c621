"""Shuffles: Transpose, DepthToSpace, SpaceToDepth (the same elements with dimensions permuted)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..kir.expr import Expr, Index
from ..kir.kernel import Reader
from ..ir.graph import Node
from .base import Inferred, MappingType, TensorType, shape_of
from .registry import register
from .shape_ops import DataMovement, ints, regroup_index


def unpermute(index: Sequence[Expr], perm: Sequence[int]) -> Index:
    """The input index of a transpose by `perm` (output axis d is input axis perm[d])."""
    out: list[Expr] = [index[0]] * len(perm)
    for d, p in enumerate(perm):
        out[p] = index[d]
    return tuple(out)


class Shuffle(DataMovement):
    """Permuted dimensions; subclasses give the output shape and the permutation itself."""

    mapping = MappingType.SHUFFLE

    def new_shape(self, node: Node, shape: tuple) -> tuple:
        raise NotImplementedError

    def shuffle(self, node: Node, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def infer(self, node: Node) -> list[Inferred]:
        return [TensorType(node.inputs[0].dtype, self.new_shape(node, shape_of(node, 0)))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        return [np.ascontiguousarray(self.shuffle(node, inputs[0]))]


@register
class Transpose(Shuffle):
    """The input with its axes permuted by `perm` (reversed by default)."""

    op_type = "Transpose"

    def perm(self, node: Node, rank: int) -> list[int]:
        perm = node.attr("perm")
        if perm is None:
            return list(range(rank))[::-1]
        perm = ints(perm)
        if sorted(perm) != list(range(rank)):
            raise self.invalid(node, f"perm {perm} is not a permutation of the {rank} axes")
        return perm

    def new_shape(self, node: Node, shape: tuple) -> tuple:
        return tuple(shape[p] for p in self.perm(node, len(shape)))

    def shuffle(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.transpose(x, self.perm(node, x.ndim))

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        return read(0, unpermute(index, self.perm(node, len(index))))


class BlockShuffle(Shuffle):
    """Moves blocksize x blocksize blocks between the channel and the spatial axes of an NCHW tensor; the
    `mode` (DCR or CRD) says how channels are ordered within a block."""

    def blocksize(self, node: Node, shape: tuple) -> int:
        if len(shape) != 4:
            raise self.invalid(node, f"needs a 4-D (NCHW) input, not shape {tuple(shape)}")
        if node.attr("mode", "DCR") not in ("DCR", "CRD"):
            raise self.fail(node, f"with mode='{node.attr('mode')}' is not supported (only DCR and CRD are)")
        size = node.attr("blocksize")
        if size is None or size < 1:
            raise self.invalid(node, f"blocksize must be a positive integer, not {size}")
        return size

    def blocks(self, node: Node, shape: tuple) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The 6-D view of the input and the transpose of it whose reshape is the output."""
        raise NotImplementedError

    def shuffle(self, node: Node, x: np.ndarray) -> np.ndarray:
        view, perm = self.blocks(node, x.shape)
        return x.reshape(view).transpose(perm).reshape(self.new_shape(node, x.shape))

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        shape = node.inputs[0].shape
        view, perm = self.blocks(node, shape)
        moved = regroup_index(index, node.outputs[0].shape, tuple(view[p] for p in perm))
        return read(0, regroup_index(unpermute(moved, perm), view, shape))


@register
class DepthToSpace(BlockShuffle):
    """NCHW -> N, C/b², H*b, W*b: channel blocks become spatial blocks."""

    op_type = "DepthToSpace"

    def new_shape(self, node: Node, shape: tuple) -> tuple:
        b = self.blocksize(node, shape)
        n, c, h, w = shape
        if c is not None and c % (b * b):
            raise self.invalid(node, f"channels ({c}) are not a multiple of blocksize² ({b * b})")
        return (n, None if c is None else c // (b * b), None if h is None else h * b, None if w is None else w * b)

    def blocks(self, node: Node, shape: tuple) -> tuple[tuple[int, ...], tuple[int, ...]]:
        n, c, h, w = shape
        b = self.blocksize(node, shape)
        if node.attr("mode", "DCR") == "DCR":
            return (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)
        return (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)


@register
class SpaceToDepth(BlockShuffle):
    """NCHW -> N, C*b², H/b, W/b: spatial blocks become channel blocks."""

    op_type = "SpaceToDepth"

    def new_shape(self, node: Node, shape: tuple) -> tuple:
        b = self.blocksize(node, shape)
        n, c, h, w = shape
        if any(d is not None and d % b for d in (h, w)):
            raise self.invalid(node, f"height and width ({h}, {w}) are not multiples of blocksize {b}")
        return (n, None if c is None else c * b * b, None if h is None else h // b, None if w is None else w // b)

    def blocks(self, node: Node, shape: tuple) -> tuple[tuple[int, ...], tuple[int, ...]]:
        n, c, h, w = shape
        b = self.blocksize(node, shape)
        order = (0, 3, 5, 1, 2, 4) if node.attr("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4)
        return (n, c, h // b, b, w // b, b), order
