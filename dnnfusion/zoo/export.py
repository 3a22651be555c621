"""Export zoo models to ONNX the way a user would (torch.onnx, TorchScript exporter), with a sample input,
cached in the user cache directory keyed by name, configuration, opset and the versions that shape the graph."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..cache import atomic_path, cache_dir
from .registry import Config, ZooError, get

DEFAULT_OPSET = 13           # the paper's era: LayerNorm and GELU stay decomposed into elementwise operators
SUPPORTED_OPSETS = range(11, 21)
CACHE_FORMAT = 1             # bump when the sidecar or the export procedure changes


@dataclass
class ZooExport:
    """An exported zoo model: the .onnx file, its sample input (.npz) and what produced it."""

    name: str
    config: Config
    opset: int
    exporter: str
    model_path: Path
    inputs_path: Path
    input_shapes: dict[str, list[int]]
    stats: dict[str, Any]
    export_seconds: float

    def feeds(self) -> dict[str, np.ndarray]:
        with np.load(self.inputs_path) as data:
            return {k: data[k] for k in data.files}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _source_digest(name: str) -> str:
    """Hash of the source that builds `name` (its builder module, the zoo modules it imports, and this exporter),
    so editing a builder invalidates its cached exports and no other model's (the configuration is keyed apart)."""
    folder = Path(__file__).parent
    pending, seen = [get(name).builder.split(":")[0], "export"], set()
    digest = hashlib.sha256()
    while pending:
        module = pending.pop()
        if module in seen or module == "registry" or not (folder / f"{module}.py").exists():
            continue
        seen.add(module)
        source = (folder / f"{module}.py").read_bytes()
        digest.update(module.encode() + source)
        pending += re.findall(r"^from \.(\w+) import", source.decode(), flags=re.MULTILINE)
    return digest.hexdigest()


def cache_key(name: str, config: Config, opset: int) -> str:
    parts = {"format": CACHE_FORMAT, "name": name, "config": config, "opset": opset, "source": _source_digest(name),
             "versions": {p: _version(p) for p in ("torch", "transformers", "onnx", "dnnfusion")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def export(name: str, small: bool = False, size: int | None = None, opset: int = DEFAULT_OPSET,
           output: Path | None = None, use_cache: bool = True,
           progress: Callable[[str], None] = lambda message: None) -> ZooExport:
    """Export zoo model `name` (default or small configuration, `size` = sequence length or image size).

    Returns the cached export when one exists; with `output`, also copies the .onnx and its .npz there."""
    folder, stem, config = _locate(name, small, size, opset)
    result = _read_cached(folder, stem) if use_cache else None
    if result is None:
        _export_fresh(name, config, opset, folder, stem, progress)
        result = _read_meta(folder / f"{stem}.json", folder)
    if output is not None:
        result = _copy_to(result, Path(output))
    return result


def cached(name: str, small: bool = False, size: int | None = None,
           opset: int = DEFAULT_OPSET) -> ZooExport | None:
    """The cached export of this exact configuration, or None."""
    folder, stem, _ = _locate(name, small, size, opset)
    return _read_cached(folder, stem)


def _read_cached(folder: Path, stem: str) -> ZooExport | None:
    if (folder / f"{stem}.json").exists() and (folder / f"{stem}.onnx").exists():
        return _read_meta(folder / f"{stem}.json", folder)
    return None


def _locate(name: str, small: bool, size: int | None, opset: int) -> tuple[Path, str, Config]:
    if opset not in SUPPORTED_OPSETS:
        raise ZooError(f"opset {opset} is not supported for zoo exports (use {SUPPORTED_OPSETS.start}.."
                       f"{SUPPORTED_OPSETS.stop - 1})")
    config = get(name).config(small=small, size=size)
    stem = f"{name}{'-small' if small else ''}-op{opset}-{cache_key(name, config, opset)}"
    return cache_dir("zoo"), stem, config


def _export_fresh(name: str, config: Config, opset: int, folder: Path, stem: str,
                  progress: Callable[[str], None]) -> None:
    try:
        import torch  # noqa: PLC0415 - optional dependency
    except ImportError as e:
        raise ZooError("zoo models are built with torch, which is not installed; install the zoo extra: "
                       "pip install 'dnnfusion[zoo]'") from e

    from ..ir import from_onnx  # noqa: PLC0415
    from ..passes import fold_constants, infer_shapes  # noqa: PLC0415
    from ..stats import graph_stats  # noqa: PLC0415

    model = get(name)
    progress(f"building {name} with random weights")
    torch.manual_seed(0)
    start = time.perf_counter()
    built = model.build(config)
    progress(f"exporting {name} to ONNX (opset {opset})")
    model_path, inputs_path = folder / f"{stem}.onnx", folder / f"{stem}.npz"
    with atomic_path(model_path) as tmp, warnings.catch_warnings(), torch.no_grad(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(built.module, tuple(built.inputs.values()), str(tmp), dynamo=False,
                          input_names=list(built.inputs), output_names=built.outputs,
                          dynamic_axes=built.dynamic_axes, opset_version=opset, do_constant_folding=True,
                          training=torch.onnx.TrainingMode.PRESERVE)
    seconds = time.perf_counter() - start
    feeds = {k: v.numpy() for k, v in built.inputs.items()}
    with atomic_path(inputs_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **feeds)
    progress(f"counting operators of {name}")
    shapes = {k: list(v.shape) for k, v in feeds.items()}
    graph = infer_shapes(from_onnx(model_path), shapes)      # imported once: counted as loaded, then folded
    loaded = graph_stats(graph)
    fold_constants(graph)
    folded = graph_stats(graph)
    stats = {"ops_before": loaded.ops_total, "ops_after_folding": folded.ops_total,
             "ops_by_mapping": loaded.ops_by_mapping, "ops_by_type": loaded.ops_by_type, "flops": folded.flops,
             "params": loaded.param_count, "param_bytes": loaded.param_bytes, "irs_bytes": loaded.irs_bytes}
    meta = {"name": name, "config": config, "opset": opset,
            "exporter": f"torch.onnx TorchScript exporter (dynamo=False), torch {torch.__version__}",
            "model": model_path.name, "inputs": inputs_path.name, "input_shapes": shapes, "stats": stats,
            "export_seconds": round(seconds, 2)}
    with atomic_path(folder / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def _read_meta(meta_path: Path, folder: Path) -> ZooExport:
    meta = json.loads(meta_path.read_text())
    return ZooExport(name=meta["name"], config=meta["config"], opset=meta["opset"], exporter=meta["exporter"],
                     model_path=folder / meta["model"], inputs_path=folder / meta["inputs"],
                     input_shapes=meta["input_shapes"], stats=meta["stats"], export_seconds=meta["export_seconds"])


def _copy_to(result: ZooExport, output: Path) -> ZooExport:
    if output.is_dir() or output.suffix != ".onnx":
        output = output / f"{result.name}.onnx"
    output.parent.mkdir(parents=True, exist_ok=True)
    inputs = output.with_suffix(".npz")
    shutil.copyfile(result.model_path, output)
    shutil.copyfile(result.inputs_path, inputs)
    return ZooExport(**{**asdict(result), "model_path": output, "inputs_path": inputs})
