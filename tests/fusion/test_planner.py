"""The DNNFusion planner on hand-built graphs: convexity, partial fusion with predecessors, seed order, the
constraint bounds, and kernel counts of common patterns asserted exactly (like a kernel-count regression test)."""

import numpy as np
import pytest
from onnx import helper

from dnnfusion.fusion import PlannerOptions, Reason
from dnnfusion.pipeline import plan_model
from tests.fusion.graphs import blocks_of, plan_of
from tests.helpers import FLOAT, make_model


def node(op, inputs, output, **attrs):
    return helper.make_node(op, inputs, [output], name=output, **attrs)


def test_convexity_rejects_a_merge_that_would_cycle():
    """a = Relu(x); r = RandomUniformLike(a) (never fused); y = Add(a, r). Fusing a with y would put r both
    after and before the block."""
    model = make_model([node("Relu", ["x"], "a"), node("RandomUniformLike", ["a"], "r", seed=1.0),
                        node("Add", ["a", "r"], "y")], [("x", FLOAT, [4, 6])], ["y"])
    plan = plan_of(model)
    assert blocks_of(plan) == [["a"], ["r"], ["y"]]
    reasons = {(r.reason, r.first.node.name, r.second.node.name) for r in plan.rejections}
    assert (Reason.CONVEXITY, "a", "y") in reasons and (Reason.UNSUPPORTED, "a", "r") in reasons


def test_residual_block_fuses_around_the_shortcut():
    """x -> Relu -> Softmax -> Add(relu, softmax): every path stays inside one block, so all of it fuses."""
    model = make_model([node("Relu", ["x"], "a"), node("Softmax", ["a"], "s", axis=-1),
                        node("Add", ["a", "s"], "y")], [("x", FLOAT, [4, 6])], ["y"])
    assert blocks_of(plan_of(model)) == [["a", "s", "y"]]


def test_an_operator_fuses_with_some_of_its_predecessors_only():
    """Add(Softmax(x), Softmax(z)): once one Softmax joined, the block is Many-to-Many and the other is red."""
    model = make_model([node("Softmax", ["x"], "sx", axis=-1), node("Softmax", ["z"], "sz", axis=-1),
                        node("Add", ["sx", "sz"], "y")], [("x", FLOAT, [4, 6]), ("z", FLOAT, [4, 6])], ["y"])
    plan = plan_of(model)
    assert sorted(blocks_of(plan)) == [["sx", "y"], ["sz"]]
    assert any(r.reason is Reason.RED and r.first.node.name == "sz" for r in plan.rejections)


def seed_race(relu_rows: int, sigmoid_cols: int):
    """MatMul(Relu(x), Sigmoid(w)): both producers are One-to-One seeds; the first seed takes the MatMul."""
    return make_model([node("Relu", ["x"], "r"), node("Sigmoid", ["w"], "g"), node("MatMul", ["r", "g"], "y")],
                      [("x", FLOAT, [relu_rows, 3]), ("w", FLOAT, [3, sigmoid_cols])], ["y"])


def test_smallest_intermediate_seeds_first():
    assert sorted(blocks_of(plan_of(seed_race(2, 40)))) == [["g"], ["r", "y"]]    # Relu 24 B < Sigmoid 480 B
    assert sorted(blocks_of(plan_of(seed_race(40, 2)))) == [["g", "y"], ["r"]]


def test_input_bound_limits_a_block(tmp_path):
    """Sum of five inputs through Relu: with at most 3 block inputs, the Sum cannot join."""
    names = [f"x{i}" for i in range(5)]
    model = make_model([node("Sum", names, "s"), node("Relu", ["s"], "y")],
                       [(n, FLOAT, [4]) for n in names], ["y"])
    assert len(plan_model(model, None, "O3").blocks) == 1
    tight = plan_model(model, None, "O3", options=PlannerOptions(max_block_inputs=3))
    assert blocks_of(tight) == [["s"], ["y"]]
    assert tight.rejections[0].reason is Reason.CONSTRAINT and "5 block inputs" in tight.rejections[0].detail


def layer_norm_model():
    """LayerNorm as exporters write it at opset 13: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add."""
    inits = {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32),
             "gamma": np.ones(8, np.float32), "beta": np.zeros(8, np.float32)}
    nodes = [node("ReduceMean", ["x"], "mean", axes=[-1]), node("Sub", ["x", "mean"], "centered"),
             node("Pow", ["centered", "two"], "square"), node("ReduceMean", ["square"], "var", axes=[-1]),
             node("Add", ["var", "eps"], "var_eps"), node("Sqrt", ["var_eps"], "std"),
             node("Div", ["centered", "std"], "normed"), node("Mul", ["normed", "gamma"], "scaled"),
             node("Add", ["scaled", "beta"], "y")]
    return make_model(nodes, [("x", FLOAT, [2, 16, 8])], ["y"], inits, opset=13)


def test_layer_norm_kernel_count():
    """Seed Add(var, eps) grows to the output, and back through the variance's ReduceMean, Pow and Sub (whose
    broadcast input, the mean, comes from outside the block, so inside it Sub is One-to-One). The mean's
    ReduceMean meets a Many-to-Many block: red. Exactly two kernels, and only the mean crosses between them."""
    plan = plan_of(layer_norm_model())
    assert blocks_of(plan) == [["mean"], ["centered", "square", "var", "var_eps", "std", "normed", "scaled", "y"]]
    assert [(r.reason, r.first.node.name, r.second.node.name) for r in plan.rejections] == [
        (Reason.RED, "mean", "centered")]
    assert [v.name for v in plan.crossing_values()] == ["mean"]
    values = plan.ecg.graph.values
    assert plan.removable(values["centered"]) and not plan.removable(values["mean"]) and not plan.removable(values["y"])


def attention_model():
    """Scaled dot-product attention for one head: MatMul, Div, Add mask, Softmax, MatMul, Transpose, Reshape."""
    inits = {"scale": np.array(8.0, np.float32), "shape": np.array([16, 8], np.int64)}
    nodes = [node("Transpose", ["k"], "kt", perm=[0, 2, 1]), node("MatMul", ["q", "kt"], "scores"),
             node("Div", ["scores", "scale"], "scaled"), node("Add", ["scaled", "mask"], "masked"),
             node("Softmax", ["masked"], "probs", axis=-1), node("MatMul", ["probs", "v"], "context"),
             node("Transpose", ["context"], "ctx_t", perm=[1, 0, 2]), node("Reshape", ["ctx_t", "shape"], "y")]
    shapes = [("q", FLOAT, [2, 16, 4]), ("k", FLOAT, [2, 16, 4]), ("v", FLOAT, [2, 16, 4]), ("mask", FLOAT, [1, 1, 16])]
    return make_model(nodes, shapes, ["y"], inits, opset=13)


def test_attention_kernel_count():
    """Three Many-to-Many operators (two MatMuls, Softmax) give three kernels: the Transpose of K joins the
    first MatMul, the scaling and mask join Softmax, the output Transpose/Reshape join the second MatMul."""
    assert blocks_of(plan_of(attention_model())) == [
        ["kt", "scores"], ["scaled", "masked", "probs"], ["context", "ctx_t", "y"]]


def test_o0_and_o1_baselines():
    model = layer_norm_model()
    assert len(plan_of(model, "O0").blocks) == 9
    o1 = blocks_of(plan_of(model, "O1"))
    assert o1 == [["mean"], ["centered"], ["square", "var"], ["var_eps", "std", "normed", "scaled", "y"]]
    assert blocks_of(plan_of(attention_model(), "O1")) == [
        ["kt"], ["scores", "scaled", "masked"], ["probs"], ["context", "ctx_t", "y"]]


def conv_silu(consumer: str, kernel: int):
    """Conv 1x1 -> SiLU (Sigmoid, Mul) -> `consumer` (Conv or MaxPool) of kernel x kernel: where should the
    SiLU go?"""
    rng = np.random.default_rng(0)
    inits = {"w1": rng.normal(size=[8, 4, 1, 1]).astype(np.float32),
             "w2": rng.normal(size=[8, 8, kernel, kernel]).astype(np.float32)}
    last = node("Conv", ["m", "w2"], "y", pads=[kernel // 2] * 4) if consumer == "Conv" else \
        node("MaxPool", ["m"], "y", kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4)
    nodes = [node("Conv", ["x", "w1"], "c1"), node("Sigmoid", ["c1"], "s"), node("Mul", ["c1", "s"], "m"), last]
    return make_model(nodes, [("x", FLOAT, [1, 4, 32, 32])], ["y"], inits if consumer == "Conv" else
                      {"w1": inits["w1"]})


@pytest.mark.parametrize("consumer, kernel", [("MaxPool", 3), ("Conv", 1), ("Conv", 3)])
def test_an_activation_between_two_many_to_many_operators_is_the_first_ones_epilogue(consumer, kernel):
    """The SiLU after a convolution, before a max pool or another convolution: computed once per output on
    the convolution's register tiles, not in the consumer's prologue (which a max pool would evaluate 9 times
    per pixel, and a depthwise convolution in an extra pass over its phased copy)."""
    plan = plan_of(conv_silu(consumer, kernel))
    assert blocks_of(plan) == [["c1", "s", "m"], ["y"]]
    assert any(r.reason is Reason.EPILOGUE and r.second.node.name == "y" for r in plan.rejections)


@pytest.mark.parametrize("kernel", [1, 3])
def test_a_convolution_takes_producers_no_many_to_many_computes_into_its_prologue(kernel):
    """A SiLU of the graph's input has no epilogue to join: the convolution applies it while reading its input
    (one copy, phased, padded or as it is, applies fused producers once per element), as the paper's table
    says, 3x3 or 1x1."""
    rng = np.random.default_rng(0)
    nodes = [node("Sigmoid", ["x"], "s"), node("Mul", ["x", "s"], "m"),
             node("Conv", ["m", "w"], "y", pads=[kernel // 2] * 4)]
    model = make_model(nodes, [("x", FLOAT, [1, 4, 32, 32])], ["y"],
                       {"w": rng.normal(size=[8, 4, kernel, kernel]).astype(np.float32)})
    assert blocks_of(plan_of(model)) == [["s", "m", "y"]]


def test_an_index_chain_is_not_recomputed_for_every_gathered_element():
    """Faster R-CNN's level assignment: a chain of Sqrt, Log and Floor over 64 boxes gives the rows a Gather
    copies, 4096 elements each. Fused, the chain would run once per copied element, so the green pair is left
    to the cost model, which keeps the chain in a block of its own; the Gather still fuses with its data."""
    nodes = [node("Sqrt", ["area"], "root"), node("Log", ["root"], "log"), node("Floor", ["log"], "level"),
             node("Cast", ["level"], "index", to=7), node("Relu", ["data"], "relu"),
             node("Gather", ["relu", "index"], "y", axis=0)]
    model = make_model(nodes, [("area", FLOAT, [64]), ("data", FLOAT, [256, 4096])], ["y"])
    plan = plan_of(model)
    assert sorted(blocks_of(plan)) == [["relu", "y"], ["root", "log", "level", "index"]]
    assert any(r.reason is Reason.PROFILE and r.second.node.name == "y" for r in plan.rejections)


def test_a_concat_after_a_convolution_stays_in_the_next_ones_prologue():
    """Data movement is not an epilogue's job: a Concat of a convolution's output with a skip input, fused
    into the convolution before it, would copy the skip; in the next convolution's prologue nothing is
    copied (U-Net's decoder)."""
    rng = np.random.default_rng(0)
    nodes = [node("Conv", ["x", "w1"], "c1"), node("Concat", ["c1", "skip"], "cat", axis=1),
             node("Conv", ["cat", "w2"], "y")]
    model = make_model(nodes, [("x", FLOAT, [1, 4, 16, 16]), ("skip", FLOAT, [1, 4, 16, 16])], ["y"],
                       {"w1": rng.normal(size=[4, 4, 1, 1]).astype(np.float32),
                        "w2": rng.normal(size=[8, 8, 1, 1]).astype(np.float32)})
    assert blocks_of(plan_of(model)) == [["c1"], ["cat", "y"]]
