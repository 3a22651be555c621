"""Kernel templates of the reductions, softmax, normalizations and scans, compiled with their neighbours fused:
elementwise producers inline into the reads (prologue), elementwise consumers into the stores (epilogue).
Checked against onnxruntime with no fallback and the expected number of blocks."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import dnnfusion
from dnnfusion.kernels.gemm import PACKED_MIN_COLUMNS
from dnnfusion.kernels.microkernel import target_isa
from dnnfusion.oracle import compare, run_onnxruntime
from tests.helpers import FLOAT, INT64, make_model

INT32, DOUBLE = TensorProto.INT32, TensorProto.DOUBLE
RNG = np.random.default_rng(11)


def node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs if isinstance(outputs, list) else [outputs], **attrs)


def floats(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def axes(*values):
    return np.array(values, np.int64)


def compiled_matches(nodes, inputs, feeds, outputs, blocks, initializers=None, opset=18, level="O3"):
    """Compile the model (outputs: name -> element type) at `level`, check it has `blocks` blocks and no
    fallback, and compare every output with onnxruntime's (rtol 1e-3, atol 1e-4)."""
    model = make_model(nodes, inputs, list(outputs), initializers, opset)
    for out in model.graph.output:
        out.type.tensor_type.elem_type = outputs[out.name]
    compiled = dnnfusion.compile(model, opt_level=level)
    ours = compiled.run(feeds)
    diffs = compare(ours, run_onnxruntime(model, feeds), rtol=1e-3, atol=1e-4)
    assert diffs and all(d.ok for d in diffs), diffs
    assert compiled.stats["fallback_ops"] == []
    assert compiled.stats["blocks"] == blocks
    return ours


# --- Reduce* -------------------------------------------------------------------------------------------

def test_layer_norm_tail_pow_reducemean_add_sqrt_is_one_block():
    nodes = [node("Pow", ["x", "two"], "sq"), node("ReduceMean", ["sq", "axes"], "var"),
             node("Add", ["var", "eps"], "ve"), node("Sqrt", ["ve"], "y")]
    consts = {"two": np.array(2, np.float32), "eps": np.array(1e-5, np.float32), "axes": axes(-1)}
    compiled_matches(nodes, [("x", FLOAT, [2, 5, 16])], {"x": floats(2, 5, 16)}, {"y": FLOAT}, 1, consts)


def test_opset13_layer_norm_decomposition():
    nodes = [node("ReduceMean", ["x"], "mu", axes=[-1]), node("Sub", ["x", "mu"], "d"),
             node("Pow", ["d", "two"], "sq"), node("ReduceMean", ["sq"], "var", axes=[-1]),
             node("Add", ["var", "eps"], "ve"), node("Sqrt", ["ve"], "sd"), node("Div", ["d", "sd"], "n"),
             node("Mul", ["n", "gamma"], "g"), node("Add", ["g", "beta"], "y")]
    consts = {"two": np.array(2, np.float32), "eps": np.array(1e-5, np.float32), "gamma": floats(24),
              "beta": floats(24)}
    # O2: at most one template per block: the mean, then the variance with everything elementwise around it;
    # O3 recognises the chain as one LayerNormalization, a single kernel
    for level, blocks in (("O2", 2), ("O3", 1)):
        compiled_matches(nodes, [("x", FLOAT, [3, 4, 24])], {"x": floats(3, 4, 24, scale=3)}, {"y": FLOAT}, blocks,
                         consts, opset=13, level=level)


def test_sub_reducesum_keepdims_div():
    nodes = [node("Sub", ["x", "b"], "d"), node("ReduceSum", ["d", "axes"], "s", keepdims=1),
             node("Div", ["d", "s"], "y")]
    feeds = {"x": floats(4, 9) + 3, "b": floats(9)}
    # the Div reads the sum broadcast, so the sum is kept in a block-local buffer and the Div loops after it
    compiled_matches(nodes, [("x", FLOAT, [4, 9]), ("b", FLOAT, [9])], feeds, {"y": FLOAT}, 1,
                     {"axes": axes(1)}, opset=13)


REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


@pytest.mark.parametrize("reduced, keepdims", [((0, 2), 1), ((2,), 0), ((1,), 0), ((0,), 1), ((), 0)])
def test_every_reduce_between_abs_and_exp(reduced, keepdims):
    """Reducing trailing axes folds per output element; with kept axes after the last reduced one (1,) and
    (0,), per block of output elements along them; with none, only the elementwise part applies."""
    nodes, consts = [], {"axes": axes(*reduced)}
    for k, op in enumerate(REDUCE_OPS):             # one block each: Abs, Add (prologue), Reduce, Neg, Exp (epilogue)
        consts[f"c{k}"] = np.array(0.5 + k / 8, np.float32)
        nodes += [node("Abs", ["x"], f"a{k}"), node("Add", [f"a{k}", f"c{k}"], f"p{k}"),
                  node(op, [f"p{k}", "axes"], f"r{k}", keepdims=keepdims), node("Neg", [f"r{k}"], f"n{k}"),
                  node("Exp", [f"n{k}"], f"y{k}")]
    outputs = {f"y{k}": FLOAT for k in range(len(REDUCE_OPS))}
    compiled_matches(nodes, [("x", FLOAT, [3, 4, 20])], {"x": floats(3, 4, 20, scale=0.5)}, outputs,
                     len(REDUCE_OPS), consts)


def test_reduce_of_an_empty_set_gives_the_identity():
    nodes = [node(op, ["x", "axes"], f"y{k}") for k, op in enumerate(REDUCE_OPS)]
    outputs = {f"y{k}": FLOAT for k in range(len(REDUCE_OPS))}
    model_feeds = {"x": np.zeros((2, 0, 3), np.float32)}
    model = make_model(nodes, [("x", FLOAT, [2, 0, 3])], list(outputs), {"axes": axes(1)}, opset=18)
    for out in model.graph.output:
        out.type.tensor_type.elem_type = FLOAT
    compiled = dnnfusion.compile(model)
    assert compiled.stats["fallback_ops"] == []
    ours = compiled.run(model_feeds)
    expected = {"ReduceSum": 0, "ReduceMean": np.nan, "ReduceMax": -np.inf, "ReduceMin": np.inf, "ReduceProd": 1,
                "ReduceL1": 0, "ReduceL2": 0, "ReduceLogSum": -np.inf, "ReduceLogSumExp": -np.inf,
                "ReduceSumSquare": 0}
    for k, op in enumerate(REDUCE_OPS):
        np.testing.assert_array_equal(ours[f"y{k}"], np.full((2, 1, 3), expected[op], np.float32), err_msg=op)


def test_integer_reductions_and_noop_with_empty_axes():
    nodes = [node("ReduceMean", ["x", "axes"], "mean", keepdims=0), node("ReduceMax", ["x", "axes"], "max"),
             node("ReduceSumSquare", ["x", "none"], "same", noop_with_empty_axes=1),
             node("Add", ["same", "x"], "twice")]
    x = RNG.integers(-50, 50, (4, 6)).astype(np.int32)
    y = compiled_matches(nodes, [("x", INT32, [4, 6])], {"x": x}, {"mean": INT32, "max": INT32, "twice": INT32},
                         3, {"axes": axes(1), "none": np.zeros(0, np.int64)})
    np.testing.assert_array_equal(y["twice"], x * x + x)   # no axes: ReduceSumSquare still squares


@pytest.mark.parametrize("last", [0, 1])
def test_arg_reduce_of_a_relu_breaks_ties_by_index(last):
    nodes = [node("Relu", ["x"], "r"), node("ArgMax", ["r"], "i", axis=1, keepdims=0, select_last_index=last),
             node("Add", ["i", "one"], "y"), node("Neg", ["x"], "m"),
             node("ArgMin", ["m"], "z", axis=-1, keepdims=1, select_last_index=last)]
    x = RNG.integers(-2, 3, (3, 7, 4)).astype(np.float32)       # many ties, zeros from the Relu
    compiled_matches(nodes, [("x", FLOAT, [3, 7, 4])], {"x": x}, {"y": INT64, "z": INT64}, 2,
                     {"one": np.array(1, np.int64)})


# --- Softmax family ------------------------------------------------------------------------------------

def test_add_mask_softmax_mul_is_one_block():
    nodes = [node("Add", ["x", "mask"], "a"), node("Softmax", ["a"], "p", axis=-1), node("Mul", ["p", "v"], "y")]
    mask = np.where(RNG.random((2, 3, 6)) < 0.3, -1e9, 0).astype(np.float32)
    feeds = {"x": floats(2, 3, 6, scale=4), "mask": mask, "v": floats(2, 3, 6)}
    inputs = [("x", FLOAT, [2, 3, 6]), ("mask", FLOAT, [2, 3, 6]), ("v", FLOAT, [2, 3, 6])]
    compiled_matches(nodes, inputs, feeds, {"y": FLOAT}, 1)


@pytest.mark.parametrize("opset, axis", [(11, 1), (13, 1), (13, 0), (13, -1)])
def test_softmax_family_between_scale_and_add(opset, axis):
    nodes, consts, outputs = [], {}, {}
    for k, op in enumerate(["Softmax", "LogSoftmax", "Hardmax"]):
        consts[f"c{k}"] = np.array(k + 2, np.float32)
        nodes += [node("Mul", ["x", f"c{k}"], f"s{k}"), node(op, [f"s{k}"], f"p{k}", axis=axis),
                  node("Add", [f"p{k}", "x"], f"y{k}")]
        outputs[f"y{k}"] = FLOAT
    x = RNG.integers(-8, 9, (2, 3, 5)).astype(np.float32) / 2    # ties for Hardmax
    compiled_matches(nodes, [("x", FLOAT, [2, 3, 5])], {"x": x}, outputs, 3, consts, opset)


def test_softmax_of_rows_too_long_to_keep_their_exponentials():
    nodes = [node("Mul", ["x", "scale"], "s"), node("Softmax", ["s"], "p"), node("Sqrt", ["p"], "y")]
    compiled_matches(nodes, [("x", FLOAT, [2, 9000])], {"x": floats(2, 9000)}, {"y": FLOAT}, 1,
                     {"scale": np.array(5, np.float32)}, 13)


# --- normalizations ------------------------------------------------------------------------------------

def test_residual_add_layer_normalization_relu():
    nodes = [node("Add", ["x", "res"], "h"), node("LayerNormalization", ["h", "gamma", "beta"], "n", epsilon=1e-3),
             node("Relu", ["n"], "y")]
    feeds = {"x": floats(2, 4, 16, scale=2), "res": floats(2, 4, 16)}
    inputs = [("x", FLOAT, [2, 4, 16]), ("res", FLOAT, [2, 4, 16])]
    compiled_matches(nodes, inputs, feeds, {"y": FLOAT}, 1, {"gamma": floats(16), "beta": floats(16)}, opset=17)


def test_layer_normalization_mean_and_inv_std_outputs():
    nodes = [node("Mul", ["x", "x"], "sq"),
             node("LayerNormalization", ["sq", "gamma"], ["n", "mean", "inv"], axis=1),
             node("Sigmoid", ["n"], "y")]
    compiled_matches(nodes, [("x", FLOAT, [3, 4, 5])], {"x": floats(3, 4, 5)},
                     {"y": FLOAT, "mean": FLOAT, "inv": FLOAT}, 1, {"gamma": floats(4, 5)}, opset=17)


def test_batch_normalization_is_pointwise_with_conv_free_neighbours():
    nodes = [node("Relu", ["x"], "r"), node("BatchNormalization", ["r", "s", "b", "m", "v"], "n", epsilon=1e-3),
             node("Tanh", ["n"], "y")]
    params = {"s": floats(3), "b": floats(3), "m": floats(3), "v": np.abs(floats(3)) + 0.1}
    compiled_matches(nodes, [("x", FLOAT, [2, 3, 4, 5])], {"x": floats(2, 3, 4, 5)}, {"y": FLOAT}, 1, params, 15)


def test_instance_and_group_normalization():
    nodes = [node("Abs", ["x"], "a"), node("InstanceNormalization", ["a", "s", "b"], "i", epsilon=1e-4),
             node("Add", ["i", "x"], "y"),
             node("GroupNormalization", ["x", "gs", "gb"], "g", num_groups=2, epsilon=1e-4),
             node("Neg", ["g"], "z")]
    params = {"s": floats(4), "b": floats(4), "gs": floats(2), "gb": floats(2)}
    compiled_matches(nodes, [("x", FLOAT, [2, 4, 3, 3])], {"x": floats(2, 4, 3, 3)}, {"y": FLOAT, "z": FLOAT}, 2,
                     params, 18)


@pytest.mark.parametrize("p", [1, 2])
def test_lp_normalization_and_mean_variance_normalization(p):
    nodes = [node("Exp", ["x"], "e"), node("LpNormalization", ["e"], "l", axis=1, p=p), node("Sqrt", ["l"], "y"),
             node("MeanVarianceNormalization", ["x"], "mv", axes=[0, 2]), node("Mul", ["mv", "x"], "z")]
    compiled_matches(nodes, [("x", FLOAT, [3, 4, 5])], {"x": floats(3, 4, 5)}, {"y": FLOAT, "z": FLOAT}, 2,
                     opset=13)


def test_lrn_after_relu():
    nodes = [node("Relu", ["x"], "r"), node("LRN", ["r"], "n", size=3, alpha=1e-2, beta=0.75, bias=2.0),
             node("Add", ["n", "x"], "y")]
    compiled_matches(nodes, [("x", FLOAT, [2, 5, 3, 3])], {"x": floats(2, 5, 3, 3, scale=3)}, {"y": FLOAT}, 1)


# --- scans, TopK, Einsum -------------------------------------------------------------------------------

@pytest.mark.parametrize("exclusive, reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumulative_between_elementwise_ops(exclusive, reverse):
    ops = ["CumSum", "CumProd"] if _onnxruntime_has("CumProd", 26) else ["CumSum"]
    nodes, outputs = [], {}
    for k, op in enumerate(ops):
        nodes += [node("Sigmoid", ["x"], f"s{k}"), node(op, [f"s{k}", "axis"], f"c{k}", exclusive=exclusive,
                                                        reverse=reverse), node("Sub", [f"c{k}", "x"], f"y{k}")]
        outputs[f"y{k}"] = FLOAT
    compiled_matches(nodes, [("x", FLOAT, [3, 6, 2])], {"x": floats(3, 6, 2)}, outputs, len(ops),
                     {"axis": np.array(1, np.int64)}, 26 if len(ops) == 2 else 14)


@pytest.mark.parametrize("largest", [0, 1])
def test_topk_of_rounded_values_ties_by_lower_index(largest):
    nodes = [node("Round", ["x"], "r"), node("TopK", ["r", "k"], ["v", "i"], axis=1, largest=largest),
             node("Mul", ["v", "two"], "y")]
    consts = {"k": axes(4), "two": np.array(2, np.float32)}
    compiled_matches(nodes, [("x", FLOAT, [3, 9])], {"x": floats(3, 9, scale=2)}, {"y": FLOAT, "i": INT64}, 1,
                     consts, 11)


@pytest.mark.parametrize("equation, shapes", [("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(4, 4)]),
                                              ("...ij->...ji", [(2, 3, 4)]), ("ij,j", [(3, 4), (4,)])])
def test_einsum_with_fused_operands(equation, shapes):
    names = [f"x{i}" for i in range(len(shapes))]
    nodes = [node("Relu", [names[0]], "r"), node("Einsum", ["r"] + names[1:], "e", equation=equation),
             node("Tanh", ["e"], "y")]
    feeds = {n: floats(*s) for n, s in zip(names, shapes)}
    compiled_matches(nodes, [(n, FLOAT, list(s)) for n, s in zip(names, shapes)], feeds, {"y": FLOAT}, 1, opset=12)


def _onnxruntime_has(op: str, opset: int) -> bool:
    """Whether onnxruntime can run `op` at `opset` (new operators arrive in it later than in onnx)."""
    model = make_model([node(op, ["x", "a"], "y")], [("x", FLOAT, [2]), ("a", INT64, [])], ["y"], opset=opset)
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    try:
        run_onnxruntime(model, {"x": np.ones(2, np.float32), "a": np.array(0, np.int64)})
    except Exception:  # noqa: BLE001 - any failure to load or run means it is not available
        return False
    return True


@pytest.mark.parametrize("equation, shapes, weight, columns", [
    ("bij,bjk->bik", [(3, 20, 16), (3, 16, 40)], False, 40),
    ("bhqd,bhkd->bhqk", [(2, 3, 17, 16), (2, 3, 19, 16)], False, 19),
    ("ij,kj->ik", [(9, 33), (48, 33)], True, 48),
    ("abc,cd->abd", [(2, 7, 30), (30, 24)], True, 24),
    ("ij,jk->ki", [(13, 21), (21, 10)], False, 10),
    ("...ij,...jk->...ik", [(2, 2, 5, 6), (2, 2, 6, 17)], False, 17),
    ("bik,bjk->bji", [(2, 12, 8), (2, 31, 8)], False, 31),
    ("aib,bj->ija", [(3, 5, 11), (11, 16)], True, 16),
    ("ij,j->i", [(6, 40), (40,)], True, 1),
])
def test_einsum_contractions_run_as_matrix_products(equation, shapes, weight, columns):
    """Two-operand contractions go through the GEMM template (on the microkernels where the CPU has them),
    with fused producers, transposed and permuted operands, constant weights and permuted outputs."""
    nodes = [node("Relu", ["x0"], "r"), node("Einsum", ["r", "x1"], "e", equation=equation),
             node("Tanh", ["e"], "y")]
    feeds = {"x0": floats(*shapes[0])}
    consts = {"x1": floats(*shapes[1])} if weight else {}
    if not weight:
        feeds["x1"] = floats(*shapes[1])
    inputs = [(n, FLOAT, list(v.shape)) for n, v in feeds.items()]
    model = make_model(nodes, inputs, ["y"], consts, 12)
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    compiled = dnnfusion.compile(model)
    diffs = compare(compiled.run(feeds), run_onnxruntime(model, feeds), rtol=1e-3, atol=1e-4)
    assert diffs and all(d.ok for d in diffs), diffs
    assert compiled.stats["blocks"] == 1 and compiled.stats["fallback_ops"] == []
    assert "reduction(+:acc)" not in compiled.source      # not the generic einsum loops
    if target_isa() is not None and columns >= PACKED_MIN_COLUMNS:
        assert "df_ukr_" in compiled.source            # on the intrinsics microkernels
