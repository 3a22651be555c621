"""The IR: Graph/Node/Value, dtypes, ONNX import and export. Shape inference is a pass (`passes.shapes`), and
`pipeline.load` imports, binds shapes and folds in one call."""

from __future__ import annotations

from .graph import Graph, Node, Value
from .onnx_export import to_onnx
from .onnx_import import ModelSource, from_onnx

__all__ = ["Graph", "ModelSource", "Node", "Value", "from_onnx", "to_onnx"]
