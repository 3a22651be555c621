"""Every case the fuzzer found and a human kept (tests/fuzz/regressions/): graphs must match onnxruntime at O0 and
O3; corrupted model files must load, compile and run or raise a DnnfusionError, in a worker process with a memory
limit and a timeout (a segfault, a hang or a runaway allocation fails the test, not the test run)."""

from pathlib import Path

import numpy as np
import onnx
import pytest

import dnnfusion
from dnnfusion.fuzz.mutate import check_mutant
from dnnfusion.fuzz.worker import Worker
from dnnfusion.oracle import run_onnxruntime

HERE = Path(__file__).resolve().parent / "regressions"

FOUND = {   # what each kept case found when it was kept (python -m dnnfusion.fuzz --seed 2026, then 2027)
    "fuzz_d4387785b6": "Where -> Sigmoid at O3: a negated negative literal emitted '--1.8f', a decrement gcc refused",
    "fuzz_eef18f8277": "LayerNormalization -> GreaterOrEqual -> Where(c, x, x) at O3: the select simplified the "
                       "kernel output away, which was then read without a buffer",
    "mutant_e4bddc3795": "input (5, 1048576, 1): collapse(2) over a simd-marked loop, which gcc refused",
    "mutant_21416b2ab8": "a 3.75 GiB Tile output passed the memory check in a 4 GiB address space (mapped memory "
                         "not counted) and failed inside numpy",
    "mutant_79bd3f0fee": "Split renamed Identity, keeping 2 outputs: output counts were not checked against the "
                         "schema, and running it raised KeyError",
    "mutant_8276e12b8e": "a sparse tensor attribute whose values have no element type raised onnx's TypeError",
    "mutant_b239e09f6e": "Unique's data-dependent extent (12) then broadcast against 2 in a fallback Sub: numpy's "
                         "ValueError escaped the compiled model's run",
}


def cases(prefix: str) -> list[str]:
    return sorted(p.stem for p in HERE.glob(f"{prefix}_*.onnx"))


def test_every_kept_case_says_what_it_found():
    assert set(cases("fuzz") + cases("mutant")) == set(FOUND)


@pytest.mark.parametrize("level", ["O0", "O3"])
@pytest.mark.parametrize("case", cases("fuzz"))
def test_a_kept_graph_matches_onnxruntime(case, level):
    model = onnx.load(str(HERE / f"{case}.onnx"))
    with np.load(HERE / f"{case}.npz") as data:
        feeds = {name: data[name] for name in data.files}
    expected = run_onnxruntime(model, feeds)
    got = dnnfusion.compile(model, {k: v.shape for k, v in feeds.items()}, opt_level=level).run(feeds)
    for name, ref in expected.items():
        assert (got[name].dtype, got[name].shape) == (ref.dtype, ref.shape), name
        np.testing.assert_allclose(got[name], ref, rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("case", cases("mutant"))
def test_a_kept_corrupted_file_fails_cleanly(case):
    with Worker(memory_bytes=4 << 30) as worker:
        outcome = worker.call(check_mutant, (HERE / f"{case}.onnx").read_bytes(), True, timeout=20)
    assert getattr(outcome, "kind", None) in ("ok", "rejected"), outcome
