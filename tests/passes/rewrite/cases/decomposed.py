"""Cases for passes/rewrite/decomposed.py."""

from onnx import helper

from tests.helpers import FLOAT
from tests.passes.rewrite.harness import Case, model

X = [("x", FLOAT, [2, 3, 16])]


def mish(x: str = "x", leak: bool = False):
    nodes = [helper.make_node("Softplus", ["x"], ["s"]), helper.make_node("Tanh", ["s"], ["t"]),
             helper.make_node("Mul", [x, "t"], ["y"])]
    inputs = X + ([("z", FLOAT, [2, 3, 16])] if x == "z" else [])
    return model(nodes, inputs, ["y"] + (["t"] if leak else []))


CASES = [
    Case("mish", mish(), negatives=[mish(leak=True), mish(x="z")], edges=("zero", "negative", "small")),
]
