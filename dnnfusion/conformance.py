"""The official ONNX node tests as data: which operators each uses, which we exclude and why, and a
runner that scores the registry against them (used by the test suite and by docs/OPERATORS.md)."""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Iterable, NamedTuple

import numpy as np

from . import ops

_TRAINING_BN = "training-mode BatchNormalization (batch statistics, running-mean outputs): dnnfusion compiles inference graphs"
_RANDOM = "draws random numbers; the expected values come from onnx's own seeded generator, which no other runtime reproduces"
_OPSET_1 = "imports opset 1; dnnfusion imports opset 7 and newer (before 7, elementwise ops broadcast by attribute)"
_NOT_TENSOR = "its input is {} typed, and dnnfusion's IR holds tensors only (sequences and optionals are rejected at import)"

_SUB_BYTE_OOR = ("casts floats outside the 4-/2-bit range, which the spec leaves undefined; its expected values come "
                 "from the installed ml_dtypes (0.7 gives 0, older versions wrap); dnnfusion wraps as onnxruntime does")
_SUB_BYTE_CASTS = [f"test_{op}_{src}_to_{dst}{expanded}" for op in ("cast", "castlike") for src in ("FLOAT", "FLOAT16")
                   for dst in ("INT4", "UINT4", "INT2", "UINT2") for expanded in ("", "_expanded")]

# Individual node tests of supported operators that we exclude, each with its reason.
EXCLUDED: dict[str, str] = {
    "test_batchnorm_epsilon_training_mode": _TRAINING_BN,
    "test_batchnorm_example_training_mode": _TRAINING_BN,
    **{f"test_bernoulli{kind}{expanded}": _RANDOM for kind in ("", "_double", "_seed") for expanded in ("", "_expanded")},
    "test_training_dropout": _RANDOM,
    "test_training_dropout_default": _RANDOM,
    "test_training_dropout_default_mask": _RANDOM,
    "test_training_dropout_mask": _RANDOM,
    "test_not_2d": _OPSET_1,
    "test_not_3d": _OPSET_1,
    "test_not_4d": _OPSET_1,
    "test_identity_opt": _NOT_TENSOR.format("optional"),
    "test_identity_sequence": _NOT_TENSOR.format("sequence"),
    **{name: _SUB_BYTE_OOR for name in _SUB_BYTE_CASTS},
}


@functools.cache
def node_cases() -> tuple:
    """Every node test case that onnx ships (built in memory by onnx >= 1.23)."""
    import warnings  # noqa: PLC0415

    from onnx.backend.test.loader import load_model_tests  # noqa: PLC0415

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return tuple(load_model_tests(kind="node"))


def ops_of_case(case) -> set[tuple[str, str]]:
    """(domain, op_type) of every node in the case's model."""
    return {("" if n.domain == "ai.onnx" else n.domain, n.op_type) for n in case.model.graph.node}


def unsupported_ops_by_test() -> dict[str, set[str]]:
    """Test name -> operators it uses that the registry lacks (only tests with at least one)."""
    missing: dict[str, set[str]] = {}
    for case in node_cases():
        lacking = {f"{d + '.' if d else ''}{t}" for d, t in ops_of_case(case) if ops.get(t, d) is None}
        if lacking:
            missing[case.name] = lacking
    return missing


def cases_by_op() -> dict[str, list]:
    """op_type -> node test cases whose model contains it (default domain only)."""
    by_op: dict[str, list] = defaultdict(list)
    for case in node_cases():
        for domain, op_type in ops_of_case(case):
            if domain == "":
                by_op[op_type].append(case)
    return by_op


def run_case(case, executor: str = "compiled") -> str | None:
    """Run one node test through our backend; None when it passes, else the failure in one line."""
    return run_case_natively(case, executor)[0]


def run_case_natively(case, executor: str = "compiled") -> tuple[str | None, set[str]]:
    """The failure (None when it passes) and the operator types that ran as fallbacks instead of generated code."""
    from onnx.backend.test.runner import Runner  # noqa: PLC0415

    from .backend import DnnfusionBackend  # noqa: PLC0415

    fallbacks: set[str] = set()
    try:
        rep = DnnfusionBackend.prepare(case.model, executor=executor)
        for inputs, expected in case.data_sets:
            with np.errstate(all="ignore"):
                got = rep.run([_as_array(x) for x in inputs])
            Runner.assert_similar_outputs([_as_array(x) for x in expected], list(got), case.rtol, case.atol)
        for compiled in rep.executors():
            fallbacks |= {op.split(" ")[0] for op in getattr(compiled, "stats", {}).get("fallback_ops", [])}
    except Exception as e:  # noqa: BLE001 - the failure itself is the result we report
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300], fallbacks
    return None, fallbacks


def _as_array(x) -> np.ndarray:
    """A test value as numpy: onnx's cases hold arrays or TensorProtos."""
    from onnx import numpy_helper  # noqa: PLC0415

    return numpy_helper.to_array(x) if hasattr(x, "SerializeToString") else np.asarray(x)


class Score(NamedTuple):
    """One operator's node tests: how many pass, how many can run, how many of the passing ones ran the
    operator as generated code (not a fallback), and a line per failure."""

    passed: int
    runnable: int
    native: int
    failures: list[str]


def score(op_types: Iterable[str] | None = None) -> dict[str, Score]:
    """op_type -> its Score over the node tests that use it; a test is runnable when the registry defines every
    operator in it and EXCLUDED does not list it."""
    wanted = set(op_types) if op_types is not None else None
    blocked = unsupported_ops_by_test()
    results: dict[str, Score] = {}
    for op_type, cases in sorted(cases_by_op().items()):
        if wanted is not None and op_type not in wanted:
            continue
        runnable = [c for c in cases if c.name not in EXCLUDED and c.name not in blocked]
        outcomes = [(c, *run_case_natively(c)) for c in runnable]
        failures = [f"{c.name}: {error}" for c, error, _ in outcomes if error is not None]
        native = sum(error is None and op_type not in fallbacks for _, error, fallbacks in outcomes)
        results[op_type] = Score(len(runnable) - len(failures), len(runnable), native, failures)
    return results
