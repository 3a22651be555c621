"""Constant: a tensor given as an attribute (folded into an initializer at compile time)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..ir.graph import Node
from .base import Inferred, MappingType, Op
from .registry import register

_SCALAR_ATTRS = {"value_float": np.float32, "value_int": np.int64, "value_floats": np.float32,
                 "value_ints": np.int64, "value_string": object, "value_strings": object}


@register
class Constant(Op):
    op_type = "Constant"
    mapping = MappingType.ONE_TO_ONE

    def value(self, node: Node) -> np.ndarray:
        for key in ("value", "sparse_value"):   # the importer densifies sparse tensors
            if key in node.attrs:
                return np.asarray(node.attrs[key])
        for key, dtype in _SCALAR_ATTRS.items():
            if key in node.attrs:
                return np.array(node.attrs[key], dtype=dtype)
        raise self.invalid(node, "has none of the value attributes")

    def infer(self, node: Node) -> list[Inferred]:
        return [self.value(node)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        return [self.value(node)]

    def flops(self, node: Node) -> int:
        return 0
