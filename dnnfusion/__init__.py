"""dnnfusion: an ahead-of-time compiler for ONNX models with DNNFusion-style operator fusion.

    model = dnnfusion.compile("model.onnx", input_shapes={"input_ids": (1, 128)})
    outputs = model.run({"input_ids": ids})          # one native call per inference
    model.stats["blocks"], model.stats["fallback_ops"], model.source
    model.save("out/")                               # a folder to ship: library, weights.bin, model.h, manifest
    shipped = dnnfusion.load("out/")                 # elsewhere: no ONNX file, compiler or onnxruntime needed
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import onnx

from .errors import DnnfusionError, InputError, InvalidModelError, ModelLoadError, ShapeError, \
    UnsupportedOperatorError
from .options import CompileOptions
from .pipeline import compile_model
from .runtime.artifact import LoadedModel
from .runtime.artifact import load as _load_artifact
from .runtime.compiled import CompiledModel
from .session import InferenceSession

__all__ = ["CompileOptions", "CompiledModel", "DnnfusionError", "InferenceSession", "InputError", "InvalidModelError",
           "LoadedModel", "ModelLoadError", "ShapeError", "UnsupportedOperatorError", "compile", "load"]


def compile(model: str | bytes | onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None,  # noqa: A001
            options: CompileOptions | None = None, **fields: Any) -> CompiledModel:
    """Import, bind shapes, fold, plan the fusion, generate C, build and load it. `options` (default: from the
    environment) and any CompileOptions field by name: opt_level="O0".."O3", threads=N, profile=True, ..."""
    return compile_model(model, input_shapes, options, **fields)


def load(folder: str, threads: int | None = None) -> LoadedModel:
    """A model saved by `CompiledModel.save` or `dnnfusion compile -o`, ready to `run` (checked whole and built
    for this CPU's features); `threads` defaults to every available core."""
    return _load_artifact(folder, threads)
