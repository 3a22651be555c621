"""The official ONNX node tests, run through dnnfusion.backend (onnx builds the cases in memory) with compiled
execution: every node whose operator has generated code runs natively (the rest as counted fallbacks).
The ~1,500 tiny models are built with -O1 to keep the suite quick; the zoo and codegen tests build with -O3.

Tests whose model uses an operator the registry does not define are skipped by name: that is the only
kind of exclusion, plus the individually listed cases in EXCLUDED with the reason for each.
"""

from __future__ import annotations

import onnx.backend.test
import pytest

from dnnfusion.backend import DnnfusionBackend
from dnnfusion.conformance import EXCLUDED, unsupported_ops_by_test

backend_test = onnx.backend.test.BackendTest(DnnfusionBackend, __name__)
for name, missing in unsupported_ops_by_test().items():
    backend_test.exclude(f"^{name}_cpu$")
for name in EXCLUDED:
    backend_test.exclude(f"^{name}_cpu$")
backend_test.include(r"^test_.*_cpu$")

globals().update(backend_test.test_cases)
# Only the node tests: the model-level categories need files that current onnx wheels no longer ship.
for _category in list(backend_test.test_cases):
    if _category != "OnnxBackendNodeModelTest":
        globals().pop(_category)


@pytest.fixture(autouse=True, scope="module")
def quick_builds():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DNNFUSION_CFLAGS", "-O1 -march=native")
        yield
