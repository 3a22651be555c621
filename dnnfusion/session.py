"""onnxruntime's InferenceSession interface over compiled models, so code written for onnxruntime runs on
dnnfusion by changing the import: the same constructor order, SessionOptions read for threads and the
optimisation level, providers accepted, and dynamic dimensions bound from the first feed."""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from .errors import DnnfusionError, InputError, InputShapeError
from .ir import dtypes
from .ir.onnx_import import ModelSource, declared_shape, read_model
from .machine import available_cores
from .options import CompileOptions, resolve
from .pipeline import compile_model
from .runtime.compiled import CompiledModel
from .runtime.feeds import check_names

__all__ = ["GraphOptimizationLevel", "InferenceSession", "ModelMetadata", "NodeArg", "SessionOptions"]

CPU = "CPUExecutionProvider"
MAX_SIGNATURES = 16          # compiled models a session keeps, one per shape signature; the oldest goes first


class GraphOptimizationLevel(IntEnum):
    """onnxruntime's optimisation levels, with its names and values."""

    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


LEVEL_OF = {GraphOptimizationLevel.ORT_DISABLE_ALL: "O0", GraphOptimizationLevel.ORT_ENABLE_BASIC: "O1",
            GraphOptimizationLevel.ORT_ENABLE_EXTENDED: "O2", GraphOptimizationLevel.ORT_ENABLE_LAYOUT: "O3",
            GraphOptimizationLevel.ORT_ENABLE_ALL: "O3"}
ORT_LEVEL = {"O0": GraphOptimizationLevel.ORT_DISABLE_ALL, "O1": GraphOptimizationLevel.ORT_ENABLE_BASIC,
             "O2": GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "O3": GraphOptimizationLevel.ORT_ENABLE_ALL}


@dataclass(frozen=True)
class SessionOptions:
    """What `get_session_options()` reports when no onnxruntime SessionOptions was given: the threads and level
    the session compiles with (in onnxruntime's terms), and the CompileOptions behind them."""

    intra_op_num_threads: int
    graph_optimization_level: GraphOptimizationLevel
    compile_options: CompileOptions


@dataclass(frozen=True)
class ModelMetadata:
    """onnxruntime's ModelMetadata, read from the ONNX model."""

    producer_name: str
    graph_name: str
    domain: str
    description: str
    graph_description: str
    version: int
    custom_metadata_map: dict[str, str] = field(default_factory=dict)


class NodeArg:
    """What onnxruntime's NodeArg tells: name, shape (ints, symbolic names, or None) and element type."""

    def __init__(self, name: str, shape: list[int | str | None], type_: str) -> None:
        self.name, self.shape, self.type = name, shape, type_

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


class InferenceSession:
    """onnxruntime's session interface over dnnfusion's compiled models:
    `InferenceSession(path_or_bytes, sess_options=None, providers=None, provider_options=None)`, then
    get_inputs(), get_outputs(), run(output_names, input_feed, run_options=None), get_providers(),
    get_modelmeta(), get_session_options().

    What differs from onnxruntime:
    - there are no execution providers: dnnfusion runs its own generated CPU code, so `providers` and
      `provider_options` are accepted and ignored (a warning names any provider other than CPUExecutionProvider);
    - a `sess_options` is read only for intra_op_num_threads (0: every core) and graph_optimization_level
      (DISABLE_ALL O0, BASIC O1, EXTENDED O2, LAYOUT and ALL O3); it may also be a dnnfusion.CompileOptions;
    - code is compiled for static shapes: a model whose inputs have dynamic dimensions, given no `input_shapes`,
      is compiled at its first `run` with each input's shape taken from its feed, and again for each new shape
      signature (the feeds' shapes; the last MAX_SIGNATURES compiled models are kept), so a first run with new
      shapes takes compile time. With `input_shapes`, or a model of static shapes, it is compiled here, errors
      included, and feeds of other shapes are an error;
    - run_options are accepted and ignored.
    `options` and CompileOptions fields by name (opt_level="O0", threads=2, ...) are taken as by dnnfusion.compile;
    fields given by name win over `sess_options`, which wins over `options`."""

    def __init__(self, path_or_bytes: ModelSource, sess_options: Any = None, providers: Sequence[Any] | None = None,
                 provider_options: Sequence[Mapping[str, Any]] | None = None, *,
                 input_shapes: Mapping[str, Sequence[int]] | None = None, options: CompileOptions | None = None,
                 **fields: Any) -> None:
        proto, _ = read_model(path_or_bytes)
        self._proto = proto
        self._source = path_or_bytes if isinstance(path_or_bytes, (str, os.PathLike)) else proto
        self._sess_options = None if isinstance(sess_options, CompileOptions) else sess_options
        self.options = session_compile_options(sess_options, options, fields)
        warn_providers(providers)
        self._inputs = declared_inputs(proto)
        self._lock = threading.Lock()
        self._models: dict[tuple, CompiledModel] = {}
        self._last: CompiledModel | None = None
        self._eager = input_shapes is not None or not any(needs_binding(a) for a in self._inputs)
        if self._eager:
            self._last = compile_model(self._source, input_shapes, self.options)

    @property
    def compiled(self) -> CompiledModel | None:
        """The compiled model: the one compiled at construction, or the one the latest run used (None before)."""
        return self._last

    @property
    def compiled_models(self) -> dict[tuple, CompiledModel]:
        """The models compiled at run time, by shape signature (the feeds' shapes in input order)."""
        return dict(self._models)

    def get_inputs(self) -> list[NodeArg]:
        """The inputs: compiled shapes when compiled at construction, otherwise the model's declared shapes."""
        return self._compiled_args(self._last.graph.inputs) if self._eager else [public(a) for a in self._inputs]

    def get_outputs(self) -> list[NodeArg]:
        """The outputs: compiled shapes (None where data-dependent) when compiled at construction, otherwise the
        model's declared ones (ONNX shape inference filling in what the model leaves out)."""
        if self._eager:
            return self._compiled_args(self._last.graph.user_outputs)
        return [public(a) for a in declared_outputs(self._proto)]

    def get_overridable_initializers(self) -> list[NodeArg]:
        """Initializers are folded into the compiled code: none can be fed."""
        return []

    def get_providers(self) -> list[str]:
        return [CPU]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {CPU: {}}

    def get_session_options(self) -> Any:
        """The onnxruntime SessionOptions given, or a SessionOptions saying what the session compiles with."""
        if self._sess_options is not None:
            return self._sess_options
        return SessionOptions(self.options.threads or available_cores(), ORT_LEVEL[self.options.opt_level],
                              self.options)

    def get_modelmeta(self) -> ModelMetadata:
        """The model's producer, names, descriptions, version and metadata properties."""
        p = self._proto
        return ModelMetadata(p.producer_name, p.graph.name, p.domain, p.doc_string, p.graph.doc_string,
                             p.model_version, {m.key: m.value for m in p.metadata_props})

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any],
            run_options: Any = None) -> list[np.ndarray]:
        """The named outputs (all of them for None or []) for the feeds; run_options are ignored."""
        model = self._last if self._eager else self._model_for(input_feed)
        results = model.run(input_feed)
        names = list(output_names) if output_names else list(results)
        missing = [n for n in names if n not in results]
        if missing:
            raise InputError(f"unknown output {', '.join(map(repr, missing))}; the model's outputs are "
                             f"{', '.join(map(repr, results))}")
        return [results[n] for n in names]

    def _model_for(self, feeds: Mapping[str, Any]) -> CompiledModel:
        """The model compiled for the feeds' shapes, compiled now when this shape signature is new."""
        shapes = feed_shapes(self._inputs, feeds)
        key = tuple(shapes.values())
        model = self._models.get(key)
        if model is None:
            with self._lock:
                model = self._models.get(key)
                if model is None:
                    model = compile_model(self._source, shapes, self.options)
                    while len(self._models) >= MAX_SIGNATURES:
                        self._models.pop(next(iter(self._models)))
                    self._models[key] = model
        self._last = model
        return model

    def _compiled_args(self, values) -> list[NodeArg]:
        """Name, compiled shape (None where the extent depends on the data) and type of each value."""
        padded = self._last.graph.padded_outputs
        return [NodeArg(v.name, [None if v.name in padded and k == padded[v.name][0] else d
                                 for k, d in enumerate(v.shape)], tensor_type(dtypes.to_onnx(v.dtype)))
                for v in values]


def session_compile_options(sess_options: Any, options: CompileOptions | None,
                            fields: Mapping[str, Any]) -> CompileOptions:
    """The CompileOptions a session compiles with: `options`, then what `sess_options` says, then `fields`."""
    if isinstance(sess_options, CompileOptions):
        if options is not None:
            raise DnnfusionError("InferenceSession got CompileOptions both as sess_options and as options=; "
                                 "give them once")
        return resolve(sess_options, **fields)
    return resolve(options, **{**ort_fields(sess_options), **fields})


def ort_fields(sess_options: Any) -> dict[str, Any]:
    """CompileOptions fields from an onnxruntime SessionOptions (duck-typed): threads and opt_level."""
    if sess_options is None:
        return {}
    if not (hasattr(sess_options, "intra_op_num_threads") and hasattr(sess_options, "graph_optimization_level")):
        hint = "; pass shapes as input_shapes={...}" if isinstance(sess_options, Mapping) else ""
        raise DnnfusionError(f"InferenceSession's second argument is sess_options, an onnxruntime.SessionOptions "
                             f"or a dnnfusion.CompileOptions, not {type(sess_options).__name__}{hint}")
    threads = sess_options.intra_op_num_threads
    chosen = {"opt_level": opt_level(sess_options.graph_optimization_level)}
    return {**chosen, "threads": threads} if threads else chosen


def opt_level(level: Any) -> str:
    """dnnfusion's level for an onnxruntime GraphOptimizationLevel, matched by name or by value."""
    name = level if isinstance(level, str) else getattr(level, "name", None)
    if name in GraphOptimizationLevel.__members__:
        return LEVEL_OF[GraphOptimizationLevel[name]]
    try:
        return LEVEL_OF[GraphOptimizationLevel(int(level))]
    except (TypeError, ValueError):
        raise DnnfusionError(f"graph_optimization_level {level!r} is not one of onnxruntime's levels "
                             f"({', '.join(GraphOptimizationLevel.__members__)})") from None


def warn_providers(providers: Sequence[Any] | None) -> None:
    """One note when execution providers other than the CPU's were asked for: they are not used."""
    names = [p[0] if isinstance(p, (tuple, list)) else p for p in providers or ()]
    others = [n for n in names if n != CPU]
    if others:
        warnings.warn(f"dnnfusion runs its own generated CPU code; providers {others} are ignored", stacklevel=3)


def tensor_type(elem_type: int) -> str:
    """onnxruntime's type string for an ONNX element type: 'tensor(float)'."""
    return f"tensor({onnx.TensorProto.DataType.Name(elem_type).lower()})"


def value_arg(vi: onnx.ValueInfoProto) -> NodeArg:
    """A NodeArg from a declared value: ints, symbolic names, None for an unnamed dynamic dimension."""
    shape = declared_shape(vi) if vi.type.HasField("tensor_type") else None
    return NodeArg(vi.name, None if shape is None else list(shape), tensor_type(vi.type.tensor_type.elem_type))


def declared_inputs(model: onnx.ModelProto) -> list[NodeArg]:
    """The graph inputs that are not initializers, as the model declares them."""
    constants = {t.name for t in model.graph.initializer} | {s.values.name for s in model.graph.sparse_initializer}
    return [value_arg(vi) for vi in model.graph.input if vi.name not in constants]


def declared_outputs(model: onnx.ModelProto) -> list[NodeArg]:
    """The graph outputs as declared, with ONNX shape inference's type and shape where the model gives none."""
    outputs = [value_arg(vi) for vi in model.graph.output]
    if all(a.shape is not None and a.type != "tensor(undefined)" for a in outputs):
        return outputs
    try:
        inferred = {vi.name: value_arg(vi) for vi in onnx.shape_inference.infer_shapes(model).graph.output}
    except (onnx.shape_inference.InferenceError, ValueError, RuntimeError):
        return outputs
    return [NodeArg(a.name, a.shape if a.shape is not None else unnamed(inferred[a.name].shape),
                    a.type if a.type != "tensor(undefined)" else inferred[a.name].type) for a in outputs]


def unnamed(shape: list | None) -> list | None:
    """A shape from ONNX shape inference with the names it made up for unnamed dimensions ('unk__0') as None."""
    return None if shape is None else [None if isinstance(d, str) and d.startswith("unk__") else d for d in shape]


def public(arg: NodeArg) -> NodeArg:
    """A NodeArg as onnxruntime shows it: an unknown rank as an empty shape."""
    return arg if arg.shape is not None else NodeArg(arg.name, [], arg.type)


def needs_binding(arg: NodeArg) -> bool:
    """Whether a declared input needs its shape from a feed: a typed tensor of unknown rank, or with a dimension
    that is not a fixed size (an untyped input is compiled at once, so its error comes at construction)."""
    shape = arg.shape
    return arg.type != "tensor(undefined)" and (shape is None or any(not isinstance(d, int) or d < 0 for d in shape))


def feed_shapes(inputs: list[NodeArg], feeds: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Each input's shape from its feed, checked against the declared rank and fixed dimensions, so a wrong feed
    is an error before anything is compiled."""
    declared = {a.name: a for a in inputs}
    check_names(list(declared), feeds,
                lambda name: f"a {declared[name].type} of shape {shape_text(declared[name].shape)}")
    shapes = {}
    for arg in inputs:
        shape = tuple(np.shape(feeds[arg.name]))
        if arg.shape is not None and (len(shape) != len(arg.shape) or any(
                isinstance(d, int) and d >= 0 and d != s for d, s in zip(arg.shape, shape))):
            raise InputShapeError(f"input '{arg.name}' has shape {shape_text(shape)} but the model declares "
                                  f"{shape_text(arg.shape)}; feed an array of that shape")
        shapes[arg.name] = shape
    return shapes


def shape_text(shape: Sequence | None) -> str:
    return "?" if shape is None else "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
