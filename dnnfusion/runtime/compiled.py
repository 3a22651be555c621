"""The compiled model: the generated library, the arena and the weight blob, run with one native call per
segment (one per inference when every operator has generated code). Fallback operators run their numpy
reference on views of the same arena and are counted in the statistics, never hidden."""

from __future__ import annotations

import ctypes
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import ops
from ..codegen.program import Program
from ..ir.graph import Value
from ..codegen.build import Toolchain
from ..errors import DnnfusionError
from ..machine import available_cores, missing_features, required_features
from .feeds import check_feeds
from .native import ArenaPool, DirectCall, bind_entry, pool_waker
from .reference import _checked, computed


@dataclass(frozen=True)
class BuildInfo:
    """What a library was built for: the target's name (machine.TARGETS) and the toolchain that built it."""

    target: str = "native"
    toolchain: Toolchain = field(default_factory=Toolchain)


class CompiledModel:
    """`run(feeds) -> {output name: array}`; `stats` and `source` describe what was built
    (`report.write_plan_html(model.plan, path)` draws the plan).

    `run` is safe to call from several threads at once: each call takes an arena of its own from a small pool
    (one per concurrent caller, kept for reuse), so concurrent runs share only the read-only weights. Each model
    keeps its own thread count, whatever other models were compiled with."""

    def __init__(self, program: Program, library_path: Path | None = None, library: ctypes.CDLL | None = None,
                 threads: int | None = None, compile_seconds: float = 0.0, build: BuildInfo | None = None) -> None:
        """Run a generated program: `library` is its built native code (None when every block is a fallback),
        `build` what it was built for. `pipeline.build_plan` makes one; nothing here generates or compiles code."""
        self.program = program
        self.plan = program.plan
        self.graph = self.plan.ecg.graph
        self.profiled = program.profiled
        self.threads = threads or available_cores()
        self.build = build if build is not None else BuildInfo()
        self.library_path, self.library = library_path, library
        self._entries = {s.entry: bind_entry(getattr(library, s.entry)) for s in program.segments if s.native} \
            if library is not None else {}
        self._arenas = ArenaPool(program.arena_bytes)
        self._weights = np.ascontiguousarray(program.weights) if program.weights.size else np.zeros(64, np.uint8)
        self._weights_address = self._weights.ctypes.data
        self.compile_seconds = compile_seconds
        self._wake = pool_waker(library, self.threads, program.parallel)
        layouts = self.direct_layouts()
        self._direct = DirectCall(self._entries[program.segments[0].entry], self._arenas, self._weights_address,
                                  layouts) if layouts is not None else None
        missing = missing_features(required_features(self.build.target))
        self._cannot_run = (f"this model was built for {self.build.target}, which needs CPU features this CPU "
                            f"lacks ({', '.join(missing)}); save it to run elsewhere or recompile for another "
                            "target") if missing else None

    def direct_layouts(self) -> list[tuple[str, tuple, np.dtype]] | None:
        """The output layouts when one native call computes every output into fresh arrays (`one_call_obstacle`
        finds nothing, padded outputs included): the common case, which `run` serves without its general
        bookkeeping (a few microseconds a call)."""
        if self.one_call_obstacle(padded=False) is not None:
            return None
        return [(v.name, tuple(v.shape), v.dtype) for v in self.graph.outputs]

    def one_call_obstacle(self, padded: bool) -> str | None:
        """Why one native call cannot compute every output into fresh arrays (None: it can): an operator that
        falls back to numpy, no generated code, an output that is a constant, an input or of data-dependent
        shape, an output listed twice, or (unless `padded`: a caller that trims them) padded outputs."""
        if self.program.fallback_ops:
            return f"operators {', '.join(sorted(set(self.program.fallback_ops)))} run as numpy fallbacks"
        segments, outputs = self.program.segments, self.graph.outputs
        if len(segments) != 1 or not segments[0].native:
            return "the model has no generated code"
        inputs = {id(v) for v in self.graph.inputs}
        odd = [v.name for v in outputs if not v.is_static or v.const is not None or id(v) in inputs]
        if odd:
            return f"outputs {', '.join(map(repr, odd))} are constants, inputs or of data-dependent shape"
        if len({id(v) for v in outputs}) != len(outputs):
            return "an output is listed twice"
        if self.graph.padded_outputs and not padded:
            return "outputs are padded to a bound and cut to their counts after the call"
        return None

    def save(self, folder: str | Path) -> Path:
        """Write this model as a deployable artifact (library, weights, header, manifest) that `dnnfusion.load`
        runs in a fresh process without the ONNX file or the compiler; see `runtime.artifact`."""
        from .artifact import save  # noqa: PLC0415 - artifact imports this module's neighbours only
        return save(self, Path(folder))

    @property
    def source(self) -> str:
        return self.program.source

    @property
    def stats(self) -> dict[str, Any]:
        return {**self.plan.stats(), "arena_bytes": self.program.arena_bytes,
                "scratch_bytes": self.program.scratch_bytes,
                "weight_bytes": int(self.program.weights.size), "compile_seconds": round(self.compile_seconds, 3),
                "fallback_ops": list(self.program.fallback_ops), "native_calls_per_run": self.program.native_calls,
                "threads": self.threads, "kernel_methods": self.method_counts(),
                "blocked_values": len(self.program.blocked), "layout_conversions": len(self.program.conversions),
                "layout_conversions_at": [c.describe() for c in self.program.conversions]}

    def method_counts(self) -> dict[str, int]:
        """How many blocks each kernel method that a template chose runs (e.g. Winograd F(4x4, 3x3))."""
        return dict(sorted(Counter(self.program.methods.values()).items()))

    def _view(self, arena: np.ndarray, value: Value) -> np.ndarray:
        offset = self.program.arena_offsets[id(value)]
        return np.frombuffer(arena.data, value.dtype, value.numel, offset).reshape(value.shape)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs by name for the given feeds (checked against the compiled input names, dtypes and shapes)."""
        if self._cannot_run:
            raise DnnfusionError(self._cannot_run)
        if self._wake is not None:
            self._wake()
        arrays = [np.require(a, requirements="C") for a in check_feeds(self.graph.inputs, feeds).values()]
        if self._direct is not None:
            return self._direct(arrays, self.threads)
        env: dict[int, np.ndarray] = {id(v): a for v, a in zip(self.graph.inputs, arrays)}
        outputs = [env[id(v)].copy() if id(v) in env else v.const.copy() if v.const is not None
                   else np.empty(v.shape, v.dtype) if v.is_static else None for v in self.graph.outputs]
        inputs_ptr = (ctypes.c_void_p * max(len(arrays), 1))(*[a.ctypes.data for a in arrays])
        outputs_ptr = (ctypes.c_void_p * max(len(outputs), 1))(*[o.ctypes.data if o is not None else 0
                                                                  for o in outputs])
        env.update({id(v): o for v, o in zip(self.graph.outputs, outputs) if o is not None and id(v) not in env})
        with self._arenas.lend() as arena:
            self._run_segments(arena, env, inputs_ptr, outputs_ptr)
        for k, v in enumerate(self.graph.outputs):
            if outputs[k] is None:                                   # a data-dependent extent: the fallback's array
                outputs[k] = env[id(v)]
        return self.graph.trim_outputs({v.name: o for v, o in zip(self.graph.outputs, outputs)})

    def _run_segments(self, arena: np.ndarray, env: dict[int, np.ndarray], inputs_ptr, outputs_ptr) -> None:
        """Every segment in order: native ones with one call each, the others operator by operator in numpy."""
        arena_ptr, weights = arena.ctypes.data, self._weights_address
        for segment in self.program.segments:
            if segment.native:
                self._entries[segment.entry](arena_ptr, weights, ctypes.cast(inputs_ptr, ctypes.c_void_p),
                                             ctypes.cast(outputs_ptr, ctypes.c_void_p), self.threads)
            else:
                for block in segment.blocks:
                    for info in block.ops:
                        self._fallback(info.node, env, arena)

    def _fallback(self, node, env: dict[int, np.ndarray], arena: np.ndarray) -> None:
        """Run one operator's numpy reference, reading and writing where the native code expects its values."""
        args = []
        for v in node.inputs:
            if v is None:
                args.append(None)
            elif v.const is not None:
                args.append(v.const)
            elif id(v) in env:
                args.append(env[id(v)])
            else:
                args.append(self._view(arena, v))
        results = computed(ops.lookup(node), node, args)
        for v, array in zip(node.outputs, results):
            if v is None:
                continue
            array = _checked(node, v, np.asarray(array))
            if np.shares_memory(array, arena):              # a view of an arena slot that native code will reuse
                array = array.copy()
            if id(v) in env and any(v is o for o in self.graph.outputs):
                env[id(v)][...] = array
            elif id(v) in self.program.arena_offsets:
                self._view(arena, v)[...] = array
            else:
                env[id(v)] = array

    def block_seconds(self, reset: bool = True) -> list[float]:
        """Seconds spent in each block since the last reset (a model compiled with profile=True)."""
        if not self.profiled:
            raise ValueError("compile with profile=True to time blocks")
        times = (ctypes.c_double * max(len(self.plan.blocks), 1))()
        if self._entries:
            self.library.df_profile(times, ctypes.c_int(int(reset)))
        return list(times)[:len(self.plan.blocks)]
