"""A compiled model as a folder you can ship: the generated library and the thread pool it links, the packed
weights (memory-mapped at load), a C header for calling it without Python, and manifest.json (inputs and
outputs, the target and CPU features it needs, the toolchain, versions, the plan's statistics). `load` runs it
in a fresh process with numpy and ctypes only: no ONNX file, no compiler, no onnxruntime."""

from __future__ import annotations

import ctypes
import hashlib
import json
import platform
import re
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..codegen.build import compiler_version, file_sha256, pool_library
from ..errors import DnnfusionError
from ..kir.expr import ctype
from ..machine import available_cores, missing_features, required_features
from .feeds import check_feeds
from .native import ArenaPool, DirectCall, bind_entry, pool_waker

FORMAT = 1                                # manifest layout version; bumped when a loader could misread an older one
LIBRARY, WEIGHTS, HEADER, SOURCE, MANIFEST = "model.so", "weights.bin", "model.h", "model.c", "manifest.json"


class ArtifactError(DnnfusionError):
    """A model cannot be saved as an artifact, or a folder is not one this machine can load."""


@dataclass(frozen=True)
class TensorSpec:
    """An input or output of a saved model: name, shape and dtype (what onnxruntime's NodeArg tells)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype.name}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> TensorSpec:
        return cls(str(entry["name"]), tuple(int(d) for d in entry["shape"]), np.dtype(entry["dtype"]))


def version() -> str:
    """This package's version (as installed), for the manifest."""
    try:
        return metadata.version("dnnfusion")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- saving ---------------------------------------------------------------------------------------------------
def save(model: Any, folder: Path) -> Path:
    """Write `model` (a CompiledModel: this module is imported by it, never the reverse) into `folder` (created; files of an earlier save replaced) and return the folder."""
    _check_saveable(model)
    folder.mkdir(parents=True, exist_ok=True)
    pool = pool_library(model.build.toolchain.cc)
    shutil.copyfile(model.library_path, folder / LIBRARY)
    shutil.copyfile(pool, folder / pool.name)             # linked by this name, found through $ORIGIN
    weights = np.ascontiguousarray(model.program.weights)
    (folder / WEIGHTS).write_bytes(weights.tobytes())
    (folder / SOURCE).write_text(model.source)
    inputs, outputs = _specs(model.graph.inputs), _specs(model.graph.outputs)
    entry = model.program.segments[0].entry
    (folder / HEADER).write_text(header(model.graph.name, model.build.target, entry, model.program.arena_bytes,
                                        int(weights.size), inputs, outputs))
    manifest = {
        "format": FORMAT, "dnnfusion": version(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "graph": model.graph.name, "producer": model.graph.doc.get("producer", ""), "opsets": model.graph.opsets,
        "inputs": [s.as_json() for s in inputs], "outputs": [s.as_json() for s in outputs],
        "padded_outputs": {name: [axis, count] for name, (axis, count) in model.graph.padded_outputs.items()},
        "entry": entry, "arena_bytes": model.program.arena_bytes, "threads": model.threads,
        "library": {"file": LIBRARY, "sha256": file_sha256(folder / LIBRARY), "pool": pool.name},
        "weights": {"file": WEIGHTS, "bytes": int(weights.size), "sha256": hashlib.sha256(weights).hexdigest()},
        "target": {"name": model.build.target, "machine": platform.machine(),
                   "cpu_features": list(required_features(model.build.target))},
        "toolchain": {"cc": model.build.toolchain.cc, "version": compiler_version(model.build.toolchain.cc),
                      "flags": list(model.build.toolchain.flags)},
        "stats": {k: v for k, v in model.stats.items() if _jsonable(v)},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def _check_saveable(model: Any) -> None:
    """An artifact is one native call per run (padded detection outputs are cut to their counts at load)."""
    obstacle = model.one_call_obstacle(padded=True)
    if obstacle is not None:
        raise ArtifactError(f"cannot save: {obstacle}; an artifact computes every output in one native call")


def _specs(values: list) -> list[TensorSpec]:
    return [TensorSpec(v.name, tuple(int(d) for d in v.shape), np.dtype(v.dtype)) for v in values]


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _comment(text: str) -> str:
    """A name from the model file made safe inside a C comment (printable ASCII, no comment delimiters)."""
    return re.sub(r"[^A-Za-z0-9_.:/\-\[\] ]", "?", text)[:120]


def header(graph: str, target: str, entry: str, arena_bytes: int, weight_bytes: int, inputs: list[TensorSpec],
           outputs: list[TensorSpec]) -> str:
    """The C header of an artifact: sizes of the arena, the weights and each input and output, and the entry
    point. Names from the model appear only in comments, sanitised; identifiers are numbered."""
    lines = [f"/* Generated by dnnfusion {_comment(version())} for graph '{_comment(graph)}', target {target}.",
             "   Call: zeroed, 64-byte aligned arena of DF_MODEL_ARENA_BYTES (reused across calls, one per",
             "   concurrent caller); weights.bin's bytes; arrays of input and output pointers (C order, in the",
             "   order below); threads > 0. Returns 0. */",
             "#ifndef DNNFUSION_MODEL_H", "#define DNNFUSION_MODEL_H", "#include <stdbool.h>", "#include <stdint.h>",
             "", f"#define DF_MODEL_ARENA_BYTES {arena_bytes}ULL", f"#define DF_MODEL_WEIGHTS_BYTES {weight_bytes}ULL",
             f"#define DF_MODEL_INPUTS {len(inputs)}", f"#define DF_MODEL_OUTPUTS {len(outputs)}"]
    for kind, specs in (("INPUT", inputs), ("OUTPUT", outputs)):
        for k, spec in enumerate(specs):
            lines += [f"/* {kind.lower()} {k} '{_comment(spec.name)}': {spec.dtype.name} {list(spec.shape)} */",
                      f"#define DF_MODEL_{kind}{k}_ELEMENTS {int(np.prod(spec.shape, dtype=np.int64))}ULL",
                      f"typedef {ctype(spec.dtype)} df_model_{kind.lower()}{k}_t;"]
    for kind, specs in (("input", inputs), ("output", outputs)):
        sizes = ", ".join(f"{int(np.prod(s.shape, dtype=np.int64)) * s.dtype.itemsize}ULL" for s in specs) or "0"
        lines.append(f"static const uint64_t df_model_{kind}_bytes[] __attribute__((unused)) = {{{sizes}}};")
    lines += ["", f"int {entry}(char* arena, const char* weights, const void* const* in, void* const* out, "
                  "int threads);",
              "static inline int df_model_run(void* arena, const void* weights, const void* const* inputs, "
              "void* const* outputs, int threads) {",
              f"  return {entry}((char*)arena, (const char*)weights, inputs, outputs, threads);", "}",
              "#endif", ""]
    return "\n".join(lines)


# --- loading --------------------------------------------------------------------------------------------------
class LoadedModel:
    """A saved model loaded from its folder: `run(feeds) -> {output name: array}` as `CompiledModel.run`, with
    `inputs`, `outputs` (TensorSpec; a padded detection output's shape is its bound), `threads` and the
    `manifest`. Safe to run from several threads at once."""

    def __init__(self, folder: Path, manifest: dict[str, Any], threads: int | None = None) -> None:
        self.folder, self.manifest = folder, manifest
        self.inputs = [TensorSpec.from_json(e) for e in manifest["inputs"]]
        computed = [TensorSpec.from_json(e) for e in manifest["outputs"]]
        self.padded = {name: (int(axis), str(count)) for name, (axis, count) in manifest["padded_outputs"].items()}
        counts = {count for _, count in self.padded.values()}
        self.outputs = [s for s in computed if s.name not in counts]     # as the model defines them
        self.threads = threads or available_cores()
        self.library = ctypes.CDLL(str(folder / manifest["library"]["file"]))
        size = int(manifest["weights"]["bytes"])
        self._weights = np.memmap(folder / manifest["weights"]["file"], np.uint8, "r") if size \
            else np.zeros(64, np.uint8)
        entry = bind_entry(getattr(self.library, manifest["entry"]))
        self._wake = pool_waker(self.library, self.threads)
        self._call = DirectCall(entry, ArenaPool(int(manifest["arena_bytes"])), self._weights.ctypes.data,
                                [(s.name, s.shape, s.dtype) for s in computed])

    @property
    def stats(self) -> dict[str, Any]:
        """The plan's statistics as saved (blocks, fusion rate, ...)."""
        return dict(self.manifest.get("stats", {}))

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs by name (padded detection outputs cut to their counts, the counts dropped)."""
        if self._wake is not None:
            self._wake()
        arrays = [np.require(a, requirements="C") for a in check_feeds(self.inputs, feeds).values()]
        results = self._call(arrays, self.threads)
        counts = {count for _, count in self.padded.values()}
        trimmed = {}
        for name, array in results.items():
            if name in counts:
                continue
            if name in self.padded:
                axis, count = self.padded[name]
                array = array[(slice(None),) * axis + (slice(0, int(results[count])),)]
            trimmed[name] = array
        return trimmed


def load(folder: str | Path, threads: int | None = None) -> LoadedModel:
    """Load a folder written by `CompiledModel.save` / `dnnfusion compile -o`, after checking that it is whole
    and that this CPU has the features it was built for."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    target = manifest["target"]
    if target["machine"] != platform.machine():
        raise ArtifactError(f"{folder} was built for {target['machine']} and this machine is {platform.machine()}; "
                            "compile the model here")
    lacking = missing_features(target["cpu_features"])
    if lacking:
        raise ArtifactError(f"{folder} was built for target {target['name']}, which needs CPU features this CPU "
                            f"lacks ({', '.join(lacking)}); recompile with an older --target (e.g. x86-64-v3)")
    for name in (manifest["library"]["file"], manifest["library"]["pool"], manifest["weights"]["file"]):
        if not (folder / name).is_file():
            raise ArtifactError(f"{folder} lacks {name}; copy the whole folder that `dnnfusion compile -o` wrote")
    if (folder / manifest["weights"]["file"]).stat().st_size != int(manifest["weights"]["bytes"]):
        raise ArtifactError(f"{folder / manifest['weights']['file']} is not the size its manifest says "
                            "(truncated or replaced); copy it again")
    if file_sha256(folder / manifest["library"]["file"]) != manifest["library"]["sha256"]:
        raise ArtifactError(f"{folder / manifest['library']['file']} does not match its manifest's sha256; copy "
                            "the folder again")
    try:
        return LoadedModel(folder, manifest, threads)
    except (OSError, AttributeError) as e:
        raise ArtifactError(f"cannot load the library in {folder} ({e})") from e


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{folder} has no {MANIFEST}: it is not a folder written by `dnnfusion compile -o` "
                            "or CompiledModel.save")
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT:
            raise ArtifactError(f"{path} has format {manifest.get('format')!r}; this dnnfusion reads format "
                                f"{FORMAT}: save the model again with this version")
        missing = [key for key in ("inputs", "outputs", "padded_outputs", "entry", "arena_bytes", "library",
                                   "weights", "target") if key not in manifest]
        if missing:
            raise ArtifactError(f"{path} lacks {', '.join(missing)}; save the model again")
        return manifest
    except (ValueError, TypeError, AttributeError) as e:
        raise ArtifactError(f"{path} is not a valid manifest ({type(e).__name__}: {e}); save the model again") from e
