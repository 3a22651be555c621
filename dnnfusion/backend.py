"""ONNX backend interface (onnx.backend.base), so the official ONNX backend test suite runs against dnnfusion.

Preparing a model imports it, binds shapes (from the model, or from the first feeds when it declares
dynamic dimensions), propagates static shapes, folds constants, plans the fusion and compiles it to native code
(operators without generated code run as counted fallbacks); `prepare(model, executor="reference")` runs the
numpy reference executor instead.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from .errors import ShapeError
from .ir import Graph, from_onnx
from .options import CompileOptions
from .passes import fold_constants, infer_shapes
from .pipeline import compile_graph
from .runtime import ReferenceExecutor
from .runtime.compiled import CompiledModel

Executor = ReferenceExecutor | CompiledModel


class DnnfusionRep(BackendRep):
    """A prepared model, compiled once per distinct set of input shapes.

    dnnfusion compiles static shapes. When a shape depends on an input's *value* (a Reshape target, Slice
    bounds or Range limits fed as graph inputs, as many ONNX node tests do), the model is specialized: small
    integer and scalar feeds become compile-time constants, and a new value compiles a new executor.
    """

    SPECIALIZE_MAX_ELEMENTS = 64

    def __init__(self, model: onnx.ModelProto, executor: str = "compiled", options: CompileOptions | None = None) -> None:
        if executor not in ("compiled", "reference"):
            raise ValueError(f"executor must be 'compiled' or 'reference', not {executor!r}")
        self._source = from_onnx(model)
        self._kind = executor
        self._options = options
        self._executors: dict[tuple, Executor] = {}
        self._needs_values = False
        self._value_names: set[str] = set()

    def _executor(self, feeds: dict[str, np.ndarray]) -> Executor:
        if not self._needs_values:
            key = tuple(tuple(a.shape) for a in feeds.values())
            if key not in self._executors:
                try:
                    self._executors[key] = self._compile(feeds, {})
                except ShapeError:
                    self._needs_values = True
                else:
                    self._value_names = self._fallback_feeds(self._executors[key], feeds)
                    self._needs_values = bool(self._value_names)
                    if self._needs_values:
                        del self._executors[key]          # superseded by the specialized compile below
            if not self._needs_values:
                return self._executors[key]
        values = {n: a for n, a in feeds.items() if n in self._value_names or a.ndim == 0
                  or (a.dtype.kind in "iu" and a.size <= self.SPECIALIZE_MAX_ELEMENTS)}
        key = tuple((tuple(a.shape), a.dtype.str, a.tobytes() if n in values else b"") for n, a in feeds.items())
        if key not in self._executors:
            self._executors[key] = self._compile(feeds, values)
        return self._executors[key]

    def _fallback_feeds(self, executor: Executor, feeds: dict[str, np.ndarray]) -> set[str]:
        """Small feeds read directly by operators that fell back (Resize scales, Reduce axes, TopK's K, a CumSum
        axis): as compile-time constants they may give those operators generated code."""
        if not isinstance(executor, CompiledModel) or not executor.stats["fallback_ops"]:
            return set()
        inputs = {v.name for v in executor.graph.inputs}
        names = {v.name for b in executor.plan.blocks for o in b.ops if o.lowering is None
                 for v in o.node.inputs if v is not None and v.name in inputs}
        return {n for n in names if feeds[n].size <= self.SPECIALIZE_MAX_ELEMENTS
                and (feeds[n].dtype.kind in "iub" or feeds[n].ndim <= 1)}    # parameters, not image-like data

    def _compile(self, feeds: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> Executor:
        graph: Graph = self._source.clone()
        for v in graph.inputs:
            if v.name in values:
                v.const = values[v.name]
        infer_shapes(graph, {name: a.shape for name, a in feeds.items()})
        if self._kind == "reference":
            fold_constants(graph)
            return ReferenceExecutor(graph)
        return compile_graph(graph, self._options)

    def executors(self) -> list[Executor]:
        """The executors compiled so far (one per input-shape signature or specialization)."""
        return list(self._executors.values())

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        names = [v.name for v in self._source.inputs]
        if isinstance(inputs, dict):
            feeds = {k: np.asarray(v) for k, v in inputs.items()}
        else:
            arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            feeds = {name: np.asarray(a) for name, a in zip(names, arrays)}
        outputs = self._executor(feeds).run(feeds)
        return tuple(outputs[v.name] for v in self._source.outputs)


class DnnfusionBackend(Backend):
    """`dnnfusion.backend.prepare(model)` / `run_model(model, inputs)` as ONNX's backend API defines."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> DnnfusionRep:
        """kwargs: executor ('compiled' or 'reference') and options (a CompileOptions; default from the
        environment)."""
        return DnnfusionRep(model, kwargs.get("executor", "compiled"), kwargs.get("options"))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple:
        return cls.prepare(model, device).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU",
                 outputs_info: Any = None, **kwargs: Any) -> tuple:
        from onnx import helper  # noqa: PLC0415

        arrays = [np.asarray(a) for a in inputs]
        names = [n for n in node.input if n]
        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                        for n, a in zip(names, arrays)]
        graph_outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output if n]
        graph = helper.make_graph([node], "node", graph_inputs, graph_outputs)
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        return cls.prepare(model, device).run(arrays)


prepare = DnnfusionBackend.prepare
run_model = DnnfusionBackend.run_model
run_node = DnnfusionBackend.run_node
supports_device = DnnfusionBackend.supports_device
