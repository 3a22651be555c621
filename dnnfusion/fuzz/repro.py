"""Reproducers written under the fuzz output folder: the minimal model (.onnx), its inputs (.npz) and a
standalone pytest file. To keep a case, move its .onnx (and .npz) into tests/fuzz/regressions/, where
tests/fuzz/test_regressions.py runs every file, and say there what it found."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx

GRAPH_TEST = '''"""Fuzz regression {key}: {kind} at {level}: {message}

Found by `python -m dnnfusion.fuzz --seed {seed}` (graph seed {graph_seed}), shrunk to: {ops}.
To keep it: move fuzz_{key}.onnx and fuzz_{key}.npz into tests/fuzz/regressions/ (test_regressions.py runs them).
"""

from pathlib import Path

import numpy as np
import onnx
import pytest

import dnnfusion

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("level", ["O0", "O3"])
def test_fuzz_{key}_matches_onnxruntime(level):
    import onnxruntime as ort

    model = onnx.load(str(HERE / "fuzz_{key}.onnx"))
    with np.load(HERE / "fuzz_{key}.npz") as data:
        feeds = {{name: data[name] for name in data.files}}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(names, feeds)))
    compiled = dnnfusion.compile(model, input_shapes={{k: v.shape for k, v in feeds.items()}}, opt_level=level)
    got = compiled.run(feeds)
    for name, ref in expected.items():
        assert got[name].dtype == ref.dtype, name
        assert got[name].shape == ref.shape, name
        np.testing.assert_allclose(got[name], ref, rtol=1e-3, atol=1e-4, err_msg=name)
'''

MUTANT_TEST = '''"""Fuzz regression {key}: a corrupted model file ({mutation}) raised {error_type}: {message}

Found by `python -m dnnfusion.fuzz --seed {seed}`; dnnfusion must load, compile and run it or raise a
DnnfusionError, within a time and memory limit (the file runs in a worker process, so a segfault, a hang or a
runaway allocation fails this test instead of the test run). To keep it: move mutant_{key}.onnx into
tests/fuzz/regressions/ (test_regressions.py runs it).
"""

from pathlib import Path

from dnnfusion.fuzz.mutate import check_mutant
from dnnfusion.fuzz.worker import Worker

HERE = Path(__file__).resolve().parent


def test_mutant_{key}_fails_cleanly():
    data = (HERE / "mutant_{key}.onnx").read_bytes()
    with Worker(memory_bytes=4 << 30) as worker:
        outcome = worker.call(check_mutant, data, True, timeout={timeout:g})
    assert getattr(outcome, "kind", None) in ("ok", "rejected"), outcome
'''


def content_key(data: bytes) -> str:
    """A short stable name for a reproducer: the hash of its bytes."""
    return hashlib.sha256(data).hexdigest()[:10]


def _npz_safe(name: str) -> bool:
    """Whether a feed name can be an .npz key that np.load gives back unchanged."""
    return name.isidentifier()


def save_graph_case(out: Path, model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], kind: str, level: str,
                    message: str, seed: int, graph_seed: int) -> Path:
    """Write fuzz_<key>.onnx, fuzz_<key>.npz and test_fuzz_<key>.py; the test file's path."""
    data = model.SerializeToString()
    key = content_key(data)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"fuzz_{key}.onnx").write_bytes(data)
    if not all(_npz_safe(n) for n in feeds):
        raise ValueError("graph input names must be identifiers to be stored in an .npz")
    np.savez(out / f"fuzz_{key}.npz", **dict(feeds))
    ops = " -> ".join(n.op_type for n in model.graph.node) or "(no nodes)"
    test = out / f"test_fuzz_{key}.py"
    test.write_text(GRAPH_TEST.format(key=key, kind=kind, level=level, message=_doc_safe(message), seed=seed,
                                      graph_seed=graph_seed, ops=ops))
    return test


def save_mutant_case(out: Path, data: bytes, mutation: str, error_type: str, message: str, seed: int,
                     timeout: float = 10.0) -> Path:
    """Write mutant_<key>.onnx and test_mutant_<key>.py (which allows `timeout` seconds); the test's path."""
    key = content_key(data)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"mutant_{key}.onnx").write_bytes(data)
    test = out / f"test_mutant_{key}.py"
    test.write_text(MUTANT_TEST.format(key=key, mutation=mutation, error_type=error_type,
                                       message=_doc_safe(message), seed=seed, timeout=timeout))
    return test


def _doc_safe(text: str) -> str:
    """A message fit for a docstring line: no quotes run, no backslashes, one line."""
    return " ".join(str(text).replace("\\", "/").replace('"""', "'''").split())[:200]
