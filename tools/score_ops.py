"""Score operators against the official ONNX node tests: `python tools/score_ops.py [OP ...]`.

Prints passed/runnable per operator and the first line of each failure (a development aid; the test suite
runs the same cases through onnx's own BackendTest)."""

from __future__ import annotations

import sys

from dnnfusion import conformance, ops


def main(names: list[str]) -> int:
    names = names or [op.op_type for op in ops.all_ops()]
    bad = 0
    for op_type, (passed, runnable, native, failures) in conformance.score(names).items():
        print(f"{op_type:28s} {passed}/{runnable}  native {native}")
        for failure in failures:
            print("    ", failure)
        bad += len(failures)
    missing = [n for n in names if ops.get(n) is None]
    if missing:
        print("not registered:", " ".join(missing))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
