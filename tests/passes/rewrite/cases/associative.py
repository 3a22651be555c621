"""Cases for passes/rewrite/associative.py: each rule's smallest graph (and the variants it covers: operand orders,
Mul and Div, the layout operators between a scale and its weights at two opsets) and graphs where a precondition
fails (constants scaling in opposite directions or overflowing when folded, huge opposite offsets, a growing
scale, an operand no smaller than the product, a non-constant weight, an intermediate with another reader)."""

import numpy as np
from onnx import helper

from tests.helpers import FLOAT
from tests.passes.rewrite.harness import Case, model

S = [2, 3, 4]
X = [("x", FLOAT, S)]
NO_LARGE = ("zero", "negative", "small", "special")   # the scale moves differ where the unscaled product overflows


def node(op: str, inputs: list[str], output: str, **attrs):
    return helper.make_node(op, inputs, [output], **attrs)


def f32(*values) -> np.ndarray:
    return np.array(values if len(values) > 1 else values[0], np.float32)


def two_step(inner: str, outer: str, c1: np.ndarray, c2: np.ndarray, leak: bool = False, swap: bool = False,
             x_second: bool = False):
    """z = outer(inner(x, c1), c2); `swap`: the root reads (c2, t); `x_second`: the inner node reads (c1, x)."""
    nodes = [node(inner, ["c1", "x"] if x_second else ["x", "c1"], "t"),
             node(outer, ["c2", "t"] if swap else ["t", "c2"], "z")]
    return model(nodes, X, ["z"] + (["t"] if leak else []), {"c1": c1, "c2": c2})


def divide(c: np.ndarray, x_first: bool = True):
    return model([node("Div", ["x", "c"] if x_first else ["c", "x"], "z")], X, ["z"], {"c": c})


def scaled_product(op: str = "Div", c: np.ndarray = f32(1.7), a=(2, 4, 3), b=(2, 3, 5), project: bool = True,
                   b_constant: bool = False, leak: str | None = None, swap: bool = False):
    """z = op(MatMul(a, b), c): a projected from x [2, 4, 6] by a constant weight (or an input when not
    `project`), b an input (or a constant)."""
    rng = np.random.default_rng(0)
    init = {"c": c}
    inputs = [("x", FLOAT, [2, 4, 6])] if project else [("a", FLOAT, list(a))]
    nodes = []
    if project:
        init["Wa"] = rng.standard_normal((6, a[-1])).astype(np.float32)
        nodes.append(node("MatMul", ["x", "Wa"], "a"))
    if b_constant:
        init["b"] = rng.standard_normal(b).astype(np.float32)
    else:
        inputs.append(("b", FLOAT, list(b)))
    nodes += [node("MatMul", ["a", "b"], "p"), node(op, ["c", "p"] if swap else ["p", "c"], "z")]
    return model(nodes, inputs, ["z"] + ([leak] if leak else []), init)


def projected_scale(op: str = "Div", c: np.ndarray = f32(2.449), bias: str | None = "const", layout: str = "attention",
                    opset: int = 17, weight_input: bool = False, leak: str | None = None):
    """z = op(layout(MatMul(x, W) + bias), c): x [2, 4, 6] projected by W [6, 6], then the head split of an
    attention (Reshape to [2, 4, 2, 3], Transpose to [2, 2, 4, 3]), or a Squeeze/Unsqueeze pair (`squeeze`: the
    axes an input from opset 13, an attribute before), or nothing (`none`)."""
    rng = np.random.default_rng(0)
    init = {"c": c, "B": rng.standard_normal(6).astype(np.float32)}
    inputs = [("x", FLOAT, [2, 4, 6])]
    if weight_input:
        inputs.append(("W", FLOAT, [6, 6]))
    else:
        init["W"] = rng.standard_normal((6, 6)).astype(np.float32)
    if bias == "input":
        inputs.append(("B", FLOAT, [6]))
        del init["B"]
    nodes = [node("MatMul", ["x", "W"], "p")]
    last = "p"
    if bias:
        nodes.append(node("Add", ["B", "p"], "q"))
        last = "q"
    if layout == "attention":
        init["shape"] = np.array([2, 4, 2, 3], np.int64)
        nodes += [node("Reshape", [last, "shape"], "r"), node("Transpose", ["r"], "t", perm=[0, 2, 1, 3])]
        last = "t"
    elif layout == "squeeze":
        if opset >= 13:
            init["axes"] = np.array([1], np.int64)
            nodes += [node("Unsqueeze", [last, "axes"], "r"), node("Squeeze", ["r", "axes"], "t")]
        else:
            nodes += [node("Unsqueeze", [last], "r", axes=[1]), node("Squeeze", ["r"], "t", axes=[1])]
        last = "t"
    nodes.append(node(op, [last, "c"], "z"))
    return model(nodes, inputs, ["z"] + ([leak] if leak else []), init, opset=opset)


V4 = f32(1.5, 2.0, 3.0, 4.0)
SMALL = f32(0.5, 0.25, 0.75, 1.0)
OFFSETS = f32(0.25, -0.5, 1.0, 2.0)

CASES = [
    # constant factor chains
    Case("mul_chain", two_step("Mul", "Mul", V4, f32(3.0)),
         negatives=[two_step("Mul", "Mul", V4, f32(0.25)),                   # one grows, one shrinks
                    two_step("Mul", "Mul", f32(1e30), f32(1e30)),            # the fold overflows
                    two_step("Mul", "Mul", SMALL, f32(1e-38)),               # the fold underflows
                    two_step("Mul", "Mul", V4, f32(3.0), leak=True)]),
    Case("mul_chain", two_step("Mul", "Mul", SMALL, f32(0.5), swap=True, x_second=True), id="mul_chain-shrinking"),
    Case("div_chain", two_step("Div", "Div", V4, f32(3.0)),
         negatives=[two_step("Div", "Div", V4, f32(0.5)), two_step("Div", "Div", V4, f32(3.0), x_second=True)]),
    Case("div_of_mul_chain", two_step("Mul", "Div", SMALL, f32(3.0), x_second=True),
         negatives=[two_step("Mul", "Div", V4, f32(3.0)), two_step("Mul", "Div", SMALL, f32(0.0))]),
    Case("mul_of_div_chain", two_step("Div", "Mul", V4, f32(0.25), swap=True),
         negatives=[two_step("Div", "Mul", V4, f32(4.0)), two_step("Div", "Mul", V4, f32(0.25), leak=True)]),
    # constant offset chains
    Case("add_chain", two_step("Add", "Add", OFFSETS, f32(0.75), x_second=True),
         negatives=[two_step("Add", "Add", f32(1e38), f32(-1e38)),           # huge offsets that cancel
                    two_step("Add", "Add", f32(3e38), f32(3e38)),            # the fold overflows
                    two_step("Add", "Add", OFFSETS, f32(0.75), leak=True)]),
    Case("sub_of_add_chain", two_step("Add", "Sub", OFFSETS, f32(1.5)),
         negatives=[two_step("Add", "Sub", f32(1e38), f32(1e38)),            # x + 1e38 - 1e38
                    two_step("Add", "Sub", OFFSETS, f32(1.5), swap=True)]),  # 1.5 - (x + c1)
    Case("add_of_sub_chain", two_step("Sub", "Add", OFFSETS, f32(1.5), swap=True),
         negatives=[two_step("Sub", "Add", OFFSETS, f32(1.5), x_second=True),  # (c1 - x) + c2
                    two_step("Sub", "Add", f32(np.inf), f32(1.0))]),
    Case("sub_chain", two_step("Sub", "Sub", OFFSETS, f32(-0.5)),
         negatives=[two_step("Sub", "Sub", OFFSETS, f32(-0.5), leak=True),
                    two_step("Sub", "Sub", f32(-1e38), f32(1e38))]),
    # division by a constant
    Case("div_by_power_of_two", divide(f32(2.0, 0.5, -8.0, 2.0 ** 127)),
         negatives=[divide(f32(3.0)), divide(f32(2.0 ** -130)), divide(f32(0.0)), divide(f32(8.0), x_first=False)]),
    Case("div_to_reciprocal", divide(f32(3.0, -7.0, 0.1, 1e30)),
         negatives=[divide(f32(0.0)), divide(f32(1e-39)), divide(f32(np.inf)), divide(f32(3.0), x_first=False)]),
    # a scale across a matrix product
    # onto the projected operand, then on again onto that projection's constant weights (folded)
    Case("matmul_scale_to_operand", scaled_product(), edges=NO_LARGE, fires=2,
         negatives=[scaled_product(project=False),                           # the scale would survive on a
                    scaled_product(c=f32(0.5)),                              # Div by 0.5 grows
                    scaled_product(a=(2, 4, 8), b=(2, 8, 4)),                # no operand smaller than the product
                    scaled_product(c=f32(2.0, 2.0, 2.0, 2.0, 2.0)),           # not a scalar
                    scaled_product(leak="p"), scaled_product(leak="a")]),
    Case("matmul_scale_to_operand", scaled_product("Mul", f32(0.35), a=(4, 6, 2), b=(2, 5), project=False,
                                                   b_constant=True, swap=True),
         edges=NO_LARGE, id="matmul_scale_to_operand-mul-onto-constant-b"),
    Case("matmul_scale_into_weights", projected_scale(), edges=NO_LARGE,
         negatives=[projected_scale(weight_input=True), projected_scale(bias="input"),
                    projected_scale(c=f32(0.5)),                             # Div by 0.5 grows
                    projected_scale(leak="r"), projected_scale(leak="q")]),
    Case("matmul_scale_into_weights", projected_scale("Mul", f32(0.125), bias=None, layout="squeeze", opset=17),
         edges=NO_LARGE, id="matmul_scale_into_weights-squeeze-axes-input"),
    Case("matmul_scale_into_weights", projected_scale("Mul", f32(-0.3), layout="squeeze", opset=11),
         edges=NO_LARGE, id="matmul_scale_into_weights-squeeze-axes-attribute"),
    Case("matmul_scale_into_weights", projected_scale(layout="none"), edges=NO_LARGE,
         id="matmul_scale_into_weights-bias-only"),
]
