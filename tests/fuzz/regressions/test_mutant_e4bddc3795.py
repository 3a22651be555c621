"""Fuzz regression e4bddc3795: a corrupted model file (proto:huge_dim) raised BuildError: the C compiler rejected the generated source <cache>/kernels/<hash>.c:

Found by `python -m dnnfusion.fuzz --seed 2026`; dnnfusion must load, compile and run it or raise a
DnnfusionError, within a time and memory limit (the file runs in a worker process, so a segfault, a hang or a
runaway allocation fails this test instead of the test run).
"""

from pathlib import Path

from dnnfusion.fuzz.mutate import check_mutant
from dnnfusion.fuzz.worker import Worker

HERE = Path(__file__).resolve().parent


def test_mutant_e4bddc3795_fails_cleanly():
    data = (HERE / "mutant_e4bddc3795.onnx").read_bytes()
    with Worker(memory_bytes=4 << 30) as worker:
        outcome = worker.call(check_mutant, data, True, timeout=10)
    assert getattr(outcome, "kind", None) in ("ok", "rejected"), outcome
