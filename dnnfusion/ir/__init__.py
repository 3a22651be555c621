"""The IR: Graph/Node/Value, dtypes, ONNX import/export and static shape propagation."""

from __future__ import annotations

from typing import Mapping, Sequence

from .graph import Graph, Node, Value
from .onnx_export import to_onnx
from .onnx_import import ModelSource, from_onnx
from .shapes import infer_shapes


def load(source: ModelSource, input_shapes: Mapping[str, Sequence[int]] | None = None, fold: bool = True) -> Graph:
    """Import a model, bind its input shapes, propagate static shapes and (by default) fold constants."""
    from ..rewrite.fold import fold_constants  # noqa: PLC0415 - rewrite builds on ir

    graph = infer_shapes(from_onnx(source), input_shapes)
    if fold:
        fold_constants(graph)
    return graph


__all__ = ["Graph", "Node", "Value", "from_onnx", "infer_shapes", "load", "to_onnx"]
