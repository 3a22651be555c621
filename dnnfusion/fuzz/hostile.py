"""A fixed list of named hostile inputs (bad files, malicious graphs, huge shapes, bad feeds, API misuse), each
run the way a user would meet it; the report lists the exception type users get for each. Wanted: a
DnnfusionError subclass (or success, where the input is legitimate, like a big-endian feed)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .differential import Outcome, failure, refusal

F = TensorProto.FLOAT
OPSET = 20


def _model(nodes: list[onnx.NodeProto], inputs: list[tuple[str, int, list]], outputs: list[str],
           inits: dict[str, np.ndarray] | None = None, opset: int = OPSET, **kw) -> onnx.ModelProto:
    """A model from nodes; outputs are declared float with unknown shape."""
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, F, None) for n in outputs],
                              [numpy_helper.from_array(a, k) for k, a in (inits or {}).items()])
    return helper.make_model(graph, opset_imports=kw.pop("opsets", [helper.make_opsetid("", opset)]),
                             ir_version=10, **kw)


def _relu() -> onnx.ModelProto:
    """A valid one-node model with input x: float[2, 3]."""
    return _model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2, 3])], ["y"])


def _compile(source, **kw):
    """dnnfusion.compile, imported where it runs (in the worker)."""
    import dnnfusion  # noqa: PLC0415

    return dnnfusion.compile(source, **kw)


def _file(tmp: Path, data: bytes, name: str = "model.onnx") -> str:
    """Write bytes to a file in tmp; its path."""
    path = tmp / name
    path.write_bytes(data)
    return str(path)


def _run_with(feeds: dict) -> None:
    """Compile the valid model and run it with `feeds`."""
    _compile(_relu()).run(feeds)


def _recursive_function() -> onnx.ModelProto:
    """A model whose local function calls itself."""
    body = [helper.make_node("F", ["x"], ["y"], domain="local")]
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("local", 1)]
    function = helper.make_function("local", "F", ["x"], ["y"], body, opsets)
    return _model([helper.make_node("F", ["x"], ["y"], domain="local")], [("x", F, [2])], ["y"],
                  opsets=opsets, functions=[function])


def _external_negative_offset(tmp: Path) -> str:
    """A model file whose initializer's external data has offset -8."""
    (tmp / "w.bin").write_bytes(np.arange(8, dtype=np.float32).tobytes())
    w = TensorProto(name="w", data_type=F, dims=[4])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", "-8"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "ext",
                              [helper.make_tensor_value_info("x", F, [4])], [helper.make_tensor_value_info("y", F, None)],
                              [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return _file(tmp, model.SerializeToString())


def _huge_range() -> onnx.ModelProto:
    """Range(0, 2**40, 1) on constants: folding it would need 8 TiB."""
    inits = {"a": np.array(0, np.int64), "b": np.array(2**40, np.int64), "d": np.array(1, np.int64)}
    return _model([helper.make_node("Range", ["a", "b", "d"], ["y"])], [], ["y"], inits)


def _huge_expand() -> onnx.ModelProto:
    """Expand of a 1-element input to 2**50 elements."""
    return _model([helper.make_node("Expand", ["x", "s"], ["y"])], [("x", F, [1])], ["y"],
                  {"s": np.array([2**20, 2**20, 2**10], np.int64)})


def _huge_constant_of_shape() -> onnx.ModelProto:
    """ConstantOfShape of 2**40 elements."""
    return _model([helper.make_node("ConstantOfShape", ["s"], ["y"])], [], ["y"],
                  {"s": np.array([2**20, 2**20], np.int64)})


def _cycle() -> onnx.ModelProto:
    """Two nodes that read each other's output."""
    return _model([helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
                  [("x", F, [2])], ["b"])


X = np.ones((2, 3), np.float32)
CASES: dict[str, Callable[[Path], object]] = {
    "empty file": lambda tmp: _compile(_file(tmp, b"")),
    "a directory": lambda tmp: _compile(str(tmp)),
    "missing file": lambda tmp: _compile(str(tmp / "nope.onnx")),
    "6-byte text file": lambda tmp: _compile(_file(tmp, b"hello\n")),
    "path with a NUL byte": lambda tmp: _compile(str(tmp / "a\x00b.onnx")),
    "not a model (int)": lambda tmp: _compile(42),
    "truncated model": lambda tmp: _compile(_file(tmp, _relu().SerializeToString()[:40])),
    "unknown op": lambda tmp: _compile(_model([helper.make_node("NoSuchOp", ["x"], ["y"])], [("x", F, [2])], ["y"])),
    "unknown domain": lambda tmp: _compile(_model([helper.make_node("Foo", ["x"], ["y"], domain="com.example")],
                                                  [("x", F, [2])], ["y"],
                                                  opsets=[helper.make_opsetid("", OPSET),
                                                          helper.make_opsetid("com.example", 1)])),
    "opset 1": lambda tmp: _compile(_model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2])], ["y"], opset=1)),
    "cycle": lambda tmp: _compile(_cycle()),
    "recursive function": lambda tmp: _compile(_recursive_function()),
    "output never defined": lambda tmp: _compile(_model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2])],
                                                        ["z"])),
    "huge Range": lambda tmp: _compile(_huge_range()),
    "huge Expand": lambda tmp: _compile(_huge_expand()),
    "huge ConstantOfShape": lambda tmp: _compile(_huge_constant_of_shape()),
    "huge input dim": lambda tmp: _compile(_model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2**40])],
                                                  ["y"])),
    "unbound symbolic dim": lambda tmp: _compile(_model([helper.make_node("Relu", ["x"], ["y"])],
                                                        [("x", F, ["N", 3])], ["y"])),
    "external data, negative offset": lambda tmp: _compile(_external_negative_offset(tmp)),
    "input_shapes of wrong rank": lambda tmp: _compile(_relu(), input_shapes={"x": (1, 2, 3)}),
    "input_shapes for an unknown input": lambda tmp: _compile(_relu(), input_shapes={"nope": (2, 3)}),
    "input_shapes with a negative dim": lambda tmp: _compile(_relu(), input_shapes={"x": (-2, 3)}),
    "unknown opt level": lambda tmp: _compile(_relu(), opt_level="O9"),
    "wrong feed dtype": lambda tmp: _run_with({"x": X.astype(np.float64)}),
    "wrong feed shape": lambda tmp: _run_with({"x": np.ones((3, 2), np.float32)}),
    "missing feed": lambda tmp: _run_with({}),
    "unknown feed name": lambda tmp: _run_with({"x": X, "nope": X}),
    "feed as a nested list": lambda tmp: _run_with({"x": X.tolist()}),
    "feed as a string": lambda tmp: _run_with({"x": "hello"}),
    "big-endian feed": lambda tmp: _run_with({"x": X.astype(">f4")}),
    "non-contiguous feed": lambda tmp: _run_with({"x": np.ones((2, 6), np.float32)[:, ::2]}),
}


def run_hostile(name: str) -> Outcome:
    """Run one named case in a fresh temporary folder: ok, rejected (a DnnfusionError) or crash."""
    import dnnfusion  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="dnnfusion-hostile-") as tmp:
        try:
            CASES[name](Path(tmp))
        except dnnfusion.DnnfusionError as e:
            return refusal(e)
        except Exception as e:  # noqa: BLE001 - anything else is what users would see as a raw exception
            return failure("crash", e)
    return Outcome("ok")
