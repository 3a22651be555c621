"""dnnfusion: an ahead-of-time compiler for ONNX models with DNNFusion-style operator fusion.

    model = dnnfusion.compile("model.onnx", input_shapes={"input_ids": (1, 128)})
    outputs = model.run({"input_ids": ids})          # one native call per inference
    model.stats["blocks"], model.stats["fallback_ops"], model.source
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import onnx

from .errors import DnnfusionError, InputError, InvalidModelError, ModelLoadError, ShapeError, \
    UnsupportedOperatorError
from .ir import dtypes
from .options import CompileOptions
from .pipeline import compile_model
from .runtime.compiled import CompiledModel

__all__ = ["CompileOptions", "CompiledModel", "DnnfusionError", "InferenceSession", "InputError", "InvalidModelError",
           "ModelLoadError", "ShapeError", "UnsupportedOperatorError", "compile"]


def compile(model: str | bytes | onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None,  # noqa: A001
            options: CompileOptions | None = None, **fields: Any) -> CompiledModel:
    """Import, bind shapes, fold, plan the fusion, generate C, build and load it. `options` (default: from the
    environment) and any CompileOptions field by name: opt_level="O0".."O3", threads=N, profile=True, ..."""
    return compile_model(model, input_shapes, options, **fields)


class _Arg:
    """What onnxruntime's NodeArg tells: name, shape and element type."""

    def __init__(self, name: str, shape: list[int], type_: str) -> None:
        self.name, self.shape, self.type = name, shape, type_


class InferenceSession:
    """onnxruntime's session interface over a compiled model: get_inputs(), get_outputs(), run(names, feeds)."""

    def __init__(self, model: str | bytes | onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None,
                 options: CompileOptions | None = None, **fields: Any) -> None:
        self.compiled = compile(model, input_shapes, options, **fields)

    def _args(self, values) -> list[_Arg]:
        """Name, shape (None where the extent depends on the data) and type of each value."""
        padded = self.compiled.graph.padded_outputs
        return [_Arg(v.name, [None if v.name in padded and k == padded[v.name][0] else d for k, d in enumerate(v.shape)],
                     f"tensor({onnx.TensorProto.DataType.Name(dtypes.to_onnx(v.dtype)).lower()})") for v in values]

    def get_inputs(self) -> list[_Arg]:
        return self._args(self.compiled.graph.inputs)

    def get_outputs(self) -> list[_Arg]:
        return self._args(self.compiled.graph.user_outputs)

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, Any]) -> list[Any]:
        results = self.compiled.run(feeds)
        names = list(output_names) if output_names else list(results)
        missing = [n for n in names if n not in results]
        if missing:
            raise InputError(f"unknown output {', '.join(map(repr, missing))}; the model's outputs are "
                             f"{', '.join(map(repr, results))}")
        return [results[n] for n in names]
