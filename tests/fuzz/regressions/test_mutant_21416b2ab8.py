"""Fuzz regression 21416b2ab8: a corrupted model file (proto:huge_dim) raised MemoryError: Unable to allocate 3.75 GiB for an array with shape (8, 6, 20971520) and data type float32

Found by `python -m dnnfusion.fuzz --seed 2026`; dnnfusion must load, compile and run it or raise a
DnnfusionError, within a time and memory limit (the file runs in a worker process, so a segfault, a hang or a
runaway allocation fails this test instead of the test run).
"""

from pathlib import Path

from dnnfusion.fuzz.mutate import check_mutant
from dnnfusion.fuzz.worker import Worker

HERE = Path(__file__).resolve().parent


def test_mutant_21416b2ab8_fails_cleanly():
    data = (HERE / "mutant_21416b2ab8.onnx").read_bytes()
    with Worker(memory_bytes=4 << 30) as worker:
        outcome = worker.call(check_mutant, data, True, timeout=10)
    assert getattr(outcome, "kind", None) in ("ok", "rejected"), outcome
