"""Cases for passes/rewrite/commutative.py: the paper's reordered products on their smallest graphs, and graphs
where a precondition fails (an intermediate read elsewhere, a different operand where the same one is needed)."""

from onnx import TensorProto, helper

from tests.helpers import FLOAT
from tests.passes.rewrite.harness import Case, model

SMALL = [("a", FLOAT, [3, 1])]                 # A broadcasts: the rewrite then saves full-size work
WIDE = [("b", FLOAT, [3, 16]), ("c", FLOAT, [3, 16])]
FINITE = ("zero", "negative", "small")


def node(op: str, inputs: list[str], output: str, **attrs):
    return helper.make_node(op, inputs, [output], **attrs)


def reciprocal_squared(other: bool = False, leak: bool = False):
    nodes = [node("Reciprocal", ["a"], "ra"), node("Mul", ["c" if other else "a", "b"], "ab"),
             node("Reciprocal", ["ab"], "rab"), node("Mul", ["ra", "rab"], "y")]
    return model(nodes, SMALL + WIDE, ["y"] + (["ra"] if leak else []))


def square_root_squared(op: str = "Sqrt"):
    nodes = [node(op, ["b"], "s"), node("Mul", ["a", "s"], "u"), node("Mul", ["s", "c"], "v"),
             node("Mul", ["u", "v"], "y")]
    return model(nodes, SMALL + WIDE, ["y"])


def absolute_once(leak: bool = False, second: str = "Abs"):
    nodes = [node("Abs", ["a"], "p"), node("Mul", ["p", "b"], "u"), node(second, ["c"], "q"), node("Mul", ["u", "q"], "y")]
    return model(nodes, SMALL + WIDE, ["y"] + (["u"] if leak else []))


def reduction_squared(op: str = "ReduceSum"):
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    reduce = node(op, ["b", "axes"], "r", keepdims=1) if op == "ReduceSum" else node(op, ["b"], "r", axes=[1],
                                                                                      keepdims=1)
    nodes = [reduce, node("Mul", ["a", "r"], "u"), node("Mul", ["r", "c"], "v"), node("Mul", ["u", "v"], "y")]
    m = model(nodes, [("a", FLOAT, [3, 16])] + WIDE, ["y"])
    m.graph.initializer.append(axes)
    return m


CASES = [
    Case("reciprocal_squared", reciprocal_squared(), negatives=[reciprocal_squared(other=True),
                                                                reciprocal_squared(leak=True)],
         edges=FINITE, low=0.5, high=4.0),
    Case("square_root_squared", square_root_squared(), negatives=[square_root_squared("Abs")],
         edges=("zero",), low=0.0, high=9.0),                   # off by default: a negative B is NaN before
    Case("absolute_once", absolute_once(), negatives=[absolute_once(leak=True), absolute_once(second="Neg")],
         edges=FINITE),
    Case("reduction_squared", reduction_squared(), negatives=[reduction_squared("ReduceMax")], edges=FINITE),
]
