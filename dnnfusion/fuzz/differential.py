"""Compile a model with dnnfusion, run it, and compare every output with onnxruntime; classify the result.

Classes: ok, mismatch (numbers, dtype or shape differ), crash (an exception that is not a DnnfusionError, a
BuildError, a dead worker, a timeout), rejected (a DnnfusionError on a valid graph), ort-rejected (onnxruntime refused the model:
the case is skipped).
"""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

RTOL, ATOL = 1e-3, 1e-4
LEVELS = ("O0", "O3")
KINDS = ("ok", "mismatch", "crash", "rejected", "ort-rejected")
_PACKAGE = Path(__file__).resolve().parents[1]
_FUZZ = Path(__file__).resolve().parent


@dataclass
class Outcome:
    """The class of one case and, for failures, what went wrong and where."""

    kind: str
    level: str = ""
    error_type: str = ""
    message: str = ""
    where: str = ""

    def signature(self) -> tuple[str, str, str, str]:
        """What must stay the same while shrinking: class, opt level, exception type and place."""
        return self.kind, self.level, self.error_type, self.where

    def to_dict(self) -> dict:
        return asdict(self)


def where_in_dnnfusion(error: BaseException) -> str:
    """The innermost traceback frame inside dnnfusion (outside this fuzz package), as path:line (function)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if _inside(Path(f.filename), _PACKAGE) and not _inside(Path(f.filename), _FUZZ)]
    if not frames:
        return ""
    f = frames[-1]
    return f"{Path(f.filename).relative_to(_PACKAGE.parent)}:{f.lineno} ({f.name})"


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` lies under `folder`."""
    try:
        path.resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def first_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of a message, cut to `limit` characters."""
    line = next((s for s in str(text).splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def failure(kind: str, error: BaseException, level: str = "") -> Outcome:
    """An Outcome describing an exception."""
    return Outcome(kind, level, type(error).__name__, first_line(str(error)), where_in_dnnfusion(error))


def refusal(error: BaseException, level: str = "") -> Outcome:
    """A DnnfusionError as an Outcome: "rejected", except a BuildError (the C compiler refused the generated
    source, which the error itself calls a dnnfusion bug), which is a "crash"."""
    from dnnfusion.codegen.build import BuildError  # noqa: PLC0415

    return failure("crash" if isinstance(error, BuildError) else "rejected", error, level)


def run_onnxruntime(model_bytes: bytes, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every graph output from onnxruntime's CPU provider (warnings silenced)."""
    import onnxruntime as ort  # noqa: PLC0415 - optional dependency, imported where it is used

    ort.set_default_logger_severity(4)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds))))


def compare(got: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
            rtol: float = RTOL, atol: float = ATOL) -> str | None:
    """None when every output matches (dtype, shape, allclose); else what differs in the first bad output."""
    for name, ref in expected.items():
        if name not in got:
            return f"output '{name}' is missing"
        ours, ref = np.asarray(got[name]), np.asarray(ref)
        if ours.dtype != ref.dtype:
            return f"output '{name}' is {ours.dtype}, onnxruntime gives {ref.dtype}"
        if ours.shape != ref.shape:
            return f"output '{name}' has shape {ours.shape}, onnxruntime gives {ref.shape}"
        if ref.dtype.kind in "fc":
            if not np.allclose(ours, ref, rtol=rtol, atol=atol, equal_nan=True):
                err = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
                worst = float(np.nanmax(np.where(np.isnan(err), np.inf, err))) if err.size else 0.0
                bad = int((~np.isclose(ours, ref, rtol=rtol, atol=atol, equal_nan=True)).sum())
                return f"output '{name}' differs in {bad}/{ref.size} elements, max abs error {worst:.3g}"
        elif not np.array_equal(ours, ref):
            bad = int((ours != ref).sum())
            return f"output '{name}' differs in {bad}/{ref.size} elements"
    return None


def check(model_bytes: bytes, feeds: Mapping[str, np.ndarray], level: str,
          expected: Mapping[str, np.ndarray] | None = None) -> Outcome:
    """Compile at `level`, run, compare with onnxruntime (or with `expected`); never raises for model faults."""
    import dnnfusion  # noqa: PLC0415 - the worker imports it once, lazily

    if expected is None:
        try:
            expected = run_onnxruntime(model_bytes, feeds)
        except Exception as e:  # noqa: BLE001 - any onnxruntime refusal skips the case
            return failure("ort-rejected", e, level)
    try:
        compiled = dnnfusion.compile(model_bytes, input_shapes={k: np.shape(v) for k, v in feeds.items()},
                                     opt_level=level)
        got = compiled.run(dict(feeds))
    except dnnfusion.DnnfusionError as e:
        return refusal(e, level)
    except Exception as e:  # noqa: BLE001 - every other exception is a finding
        return failure("crash", e, level)
    problem = compare(got, expected)
    if problem is None:
        return Outcome("ok", level)
    return Outcome("mismatch", level, "Mismatch", problem)


_ORT_CACHE: dict[bytes, object] = {}


def check_cached(model_bytes: bytes, feeds: Mapping[str, np.ndarray], level: str) -> Outcome:
    """`check`, reusing onnxruntime's result for the last model (the worker checks O0 then O3 of one graph)."""
    import hashlib  # noqa: PLC0415

    key = hashlib.sha256(model_bytes + b"".join(np.ascontiguousarray(v).tobytes() for v in feeds.values())).digest()
    if key not in _ORT_CACHE:
        _ORT_CACHE.clear()
        try:
            _ORT_CACHE[key] = run_onnxruntime(model_bytes, feeds)
        except Exception as e:  # noqa: BLE001
            _ORT_CACHE[key] = failure("ort-rejected", e, level)
    cached = _ORT_CACHE[key]
    if isinstance(cached, Outcome):
        return Outcome(cached.kind, level, cached.error_type, cached.message, cached.where)
    return check(model_bytes, feeds, level, cached)
