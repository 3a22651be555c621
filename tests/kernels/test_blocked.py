"""Convolutions and pools on channel-blocked values (kernels/blocked.py, codegen/layouts.py): mobile inverted
bottlenecks (pointwise expand, depthwise, squeeze-excitation, pointwise project, residual) whose values between
blocks are held blocked, every geometry the depthwise kernel's border handling must get right, the prologues a
pointwise product meets (an SE scale on blocked or row-major input, a fused producer), and every other reader
on a blocked value (layouts="all"), on each ISA this CPU runs, against onnxruntime."""

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from dnnfusion.codegen.layouts import conversions
from dnnfusion.kernels.blocked import BLOCKED_NOTE, SCALED_NOTE
from dnnfusion.oracle import compare, run_onnxruntime
from tests.helpers import FLOAT, make_model
from tests.kernels.conftest import needs_microkernels

rng = np.random.default_rng(21)
pytestmark = needs_microkernels


def checked(model, feeds, **options):
    """`model` compiled with `options`, its outputs on `feeds` checked against onnxruntime's."""
    compiled = dnnfusion.compile(model, **options)
    diffs = compare(compiled.run(feeds), run_onnxruntime(model, feeds))
    assert diffs and all(d.ok for d in diffs), diffs
    return compiled


class Net:
    """A few-node float32 model under construction: nodes, weights and a name counter."""

    def __init__(self):
        self.nodes, self.consts, self.count = [], {}, 0

    def name(self, hint):
        self.count += 1
        return f"{hint}{self.count}"

    def conv(self, x, cin, cout, k=1, stride=1, group=1, pads=None, dilation=1, bias=True):
        w, y = self.name("w"), self.name("c")
        self.consts[w] = (rng.standard_normal((cout, cin // group, k, k)) / np.sqrt(cin // group * k * k)).astype(
            np.float32)
        inputs = [x, w]
        if bias:
            inputs.append(self.name("b"))
            self.consts[inputs[-1]] = rng.standard_normal(cout).astype(np.float32) * 0.1
        pads = pads if pads is not None else [dilation * (k // 2)] * 4
        self.nodes.append(helper.make_node("Conv", inputs, [y], kernel_shape=[k, k], strides=[stride, stride],
                                           pads=pads, group=group, dilations=[dilation, dilation]))
        return y

    def op(self, op_type, *inputs, **attrs):
        y = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [y], **attrs))
        return y

    def swish(self, x):
        return self.op("Mul", x, self.op("Sigmoid", x))

    def model(self, x_shape, y):
        self.nodes.append(helper.make_node("Identity", [y], ["y"]))
        model = make_model(self.nodes, [("x", FLOAT, list(x_shape))], ["y"], self.consts, 13, FLOAT)
        return model, {"x": rng.standard_normal(x_shape).astype(np.float32)}


def mbconv(net, x, cin, expand, cout, k, stride, se=True):
    """An EfficientNet block: expand, depthwise, squeeze-excitation, project, residual where shapes allow."""
    h = net.swish(net.conv(x, cin, expand))
    h = net.swish(net.conv(h, expand, expand, k, stride, group=expand))
    if se:
        s = net.op("GlobalAveragePool", h)
        s = net.op("Sigmoid", net.conv(net.swish(net.conv(s, expand, max(1, cin // 4))), max(1, cin // 4), expand))
        h = net.op("Mul", h, s)
    y = net.conv(h, expand, cout)
    return net.op("Add", y, x) if stride == 1 and cin == cout else y


@pytest.mark.parametrize("cin,expand,cout,size,k,stride,images", [
    (32, 96, 32, 14, 3, 1, 1), (16, 96, 24, 20, 5, 2, 1), (24, 144, 24, 9, 5, 1, 2), (40, 240, 80, 7, 3, 2, 1)])
def test_bottlenecks_hold_their_values_blocked(isa, cin, expand, cout, size, k, stride, images):
    net = Net()
    y = mbconv(net, mbconv(net, "x", cin, expand, cin, k, 1), cin, expand, cout, k, stride)
    model, feeds = net.model((images, cin, size, size), y)
    compiled = checked(model, feeds)
    note = BLOCKED_NOTE.format(block=isa.lanes)
    assert note + "depthwise" in compiled.source and note + "blocked input" in compiled.source
    assert compiled.stats["blocked_values"] > 0 and compiled.stats["layout_conversions"] >= 2
    plain = checked(model, feeds, layouts="off")
    assert plain.stats["blocked_values"] == 0 and BLOCKED_NOTE.format(block=isa.lanes) not in plain.source


def test_graph_ends_stay_row_major_and_conversions_are_listed(isa):
    net = Net()
    model, feeds = net.model((1, 32, 10, 10), mbconv(net, "x", 32, 64, 32, 3, 1, se=False))
    compiled = checked(model, feeds)
    program = compiled.program
    ends = {id(v) for v in list(compiled.graph.inputs) + list(compiled.graph.outputs)}
    assert program.blocked and not ends & set(program.blocked)
    found = conversions(program.plan, program.blocked)
    blocked = f"NC{isa.lanes}c"
    assert (found[0].reads, found[0].writes) == ("plain", blocked) and found[0].block == 0
    assert blocked in found[-1].reads and found[-1].writes == "plain"      # the residual reads x itself too


def test_pooled_scales_are_not_conversions(isa):
    """A squeeze-excitation's (N, C, 1, 1) scale is the same array in either layout: its pool and the Mul that
    reads it with the blocked depthwise output convert nothing; what remains is where the chain enters and
    leaves the blocked layout, listed with each kernel's operator."""
    net = Net()
    model, feeds = net.model((1, 32, 10, 10), mbconv(net, "x", 32, 64, 32, 3, 1))
    compiled = checked(model, feeds)
    at = compiled.stats["layout_conversions_at"]
    blocked = f"NC{isa.lanes}c"
    assert compiled.stats["blocked_values"] > 0 and compiled.stats["layout_conversions"] == len(at) == 2
    assert [(c["op_type"], c["reads"], c["writes"]) for c in at] == [
        ("Conv", "plain", blocked), ("Conv", f"plain/{blocked}", "plain")]


@pytest.mark.parametrize("k,stride,pads,dilation,size", [
    (3, 1, [1, 1, 1, 1], 1, 9), (3, 2, [0, 0, 1, 1], 1, 12), (5, 2, [2, 2, 2, 2], 1, 11), (5, 1, [2, 1, 2, 3], 1, 6),
    (3, 1, [2, 2, 2, 2], 2, 10), (7, 1, [3, 3, 3, 3], 1, 3), (3, 2, [1, 1, 1, 1], 1, 2), (1, 1, [0, 0, 0, 0], 1, 5)])
def test_depthwise_borders(isa, k, stride, pads, dilation, size):
    net = Net()
    channels = 2 * isa.lanes
    h = net.op("Relu", net.conv("x", 8, channels))
    h = net.conv(h, channels, channels, k, stride, group=channels, pads=pads, dilation=dilation, bias=k != 3)
    model, feeds = net.model((1, 8, size, size), net.conv(net.op("Clip", h), channels, channels))
    compiled = checked(model, feeds)
    assert BLOCKED_NOTE.format(block=isa.lanes) + "depthwise" in compiled.source


@pytest.mark.parametrize("size,cout", [(4, 2 * 16), (28, 24)])
def test_squeeze_excitation_scale_goes_on_the_weights(isa, size, cout):
    """The SE scale of a blocked input (and of a row-major one) scales the weights per image when the plane has
    more pixels than the projection has output channels, and the input is read where it lies."""
    net = Net()
    channels = 2 * isa.lanes
    h = net.swish(net.conv("x", 8, channels))
    h = net.swish(net.conv(h, channels, channels, 3, 1, group=channels))
    s = net.op("Sigmoid", net.conv(net.op("GlobalAveragePool", h), channels, channels))
    model, feeds = net.model((2, 8, size, size), net.conv(net.op("Mul", h, s), channels, cout))
    compiled = checked(model, feeds)
    last = next(b for b in compiled.plan.blocks if b.ops[-1].node.op_type == "Identity")
    fused = [o.node.op_type for o in last.ops] == ["Mul", "Conv", "Identity"]   # the scale in the product's block
    assert (SCALED_NOTE in compiled.source) == (fused and cout < size * size)


def test_a_fused_producer_of_a_blocked_input_is_applied_as_it_is_copied(isa):
    net = Net()
    channels = 2 * isa.lanes
    a = net.conv("x", 8, channels)
    pooled = net.op("GlobalAveragePool", a)               # keeps `a` itself a block output, read by both
    y = net.conv(net.op("LeakyRelu", a, alpha=0.2), channels, channels)
    model, feeds = net.model((1, 8, 6, 6), net.op("Add", y, pooled))
    checked(model, feeds)


def test_every_reader_of_a_blocked_value_is_correct(isa):
    """With layouts="all" every eligible value is blocked, so pools, im2col and implicit-GEMM convolutions,
    concatenation, transposes, reductions over channels and broadcasts all read through the blocked index map."""
    net = Net()
    channels = 2 * isa.lanes
    a = net.op("Relu", net.conv("x", 8, channels))
    b = net.op("MaxPool", a, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = net.op("AveragePool", a, kernel_shape=[2, 2], strides=[2, 2])
    d = net.conv(net.op("Concat", b, c, axis=1), 2 * channels, channels, 3)
    e = net.op("Softmax", d, axis=1)
    f = net.op("Mul", net.op("ReduceMean", e, axes=[1], keepdims=1), net.op("Transpose", d, perm=[0, 1, 3, 2]))
    g = net.op("Resize", f, "", net.name("s"), mode="nearest")
    net.consts[net.nodes[-1].input[2]] = np.array([1, 1, 2, 2], np.float32)
    model, feeds = net.model((2, 8, 8, 8), net.conv(g, channels, channels, 3, 2, group=channels))
    compiled = checked(model, feeds, layouts="all")
    assert compiled.stats["blocked_values"] >= 5


POOL_NOTE = "a vector of channels per tap"


@pytest.mark.parametrize("op_type,attrs,staged", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), True),
    ("MaxPool", dict(kernel_shape=[5, 5], pads=[2, 2, 2, 2]), True),
    ("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), False),
    ("MaxPool", dict(kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 1, 2, 0]), True),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), False),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1), False),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, count_include_pad=1, pads=[0, 0, 1, 1]),
     False),
    ("LpPool", dict(kernel_shape=[2, 2], strides=[2, 2], p=2), False)])
def test_pools_between_pointwise_convolutions_fold_blocked_values(isa, op_type, attrs, staged):
    """A pool between two pointwise convolutions (YOLOv4's SPP, a ResNet's downsampling) keeps the value
    blocked on both sides: each tap one vector of channels, borders from the tap tables; a max pool whose
    window pays for it folds along its first axis into a stack row first."""
    net = Net()
    channels = 2 * isa.lanes
    h = net.op(op_type, net.op("Relu", net.conv("x", 8, channels)), **attrs)
    model, feeds = net.model((2, 8, 11, 11), net.conv(h, channels, channels))
    compiled = checked(model, feeds)
    assert POOL_NOTE in compiled.source and compiled.stats["blocked_values"] == 2
    assert (POOL_NOTE + ", first axis first" in compiled.source) == staged
    assert compiled.stats["layout_conversions"] == 2          # in at the first conv, out at the last


def test_a_three_dimensional_pool_folds_a_blocked_value(isa):
    channels = 2 * isa.lanes
    w1 = (rng.standard_normal((channels, 4, 1, 1, 1)) / 2).astype(np.float32)
    w2 = (rng.standard_normal((8, channels, 1, 1, 1)) / 4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], kernel_shape=[1, 1, 1]),
             helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 3, 3], strides=[1, 2, 2],
                              pads=[0, 1, 1, 1, 1, 1]),
             helper.make_node("AveragePool", ["p"], ["q"], kernel_shape=[1, 2, 2]),
             helper.make_node("Conv", ["q", "w2"], ["y"], kernel_shape=[1, 1, 1])]
    model = make_model(nodes, [("x", FLOAT, [1, 4, 4, 9, 9])], ["y"], {"w1": w1, "w2": w2}, 13, FLOAT)
    compiled = checked(model, {"x": rng.standard_normal((1, 4, 4, 9, 9)).astype(np.float32)}, layouts="all")
    assert POOL_NOTE in compiled.source


@pytest.mark.parametrize("cin,size,images", [(80, 9, 2), (96, 7, 1)])
def test_a_deep_row_major_input_is_packed_tile_by_tile(isa, cin, size, images):
    """A pointwise convolution from a row-major input too deep to read in place into a blocked output packs
    its pixels x channels operand a tile at a time (whole tiles and the last partial one, per image)."""
    net = Net()
    channels = 4 * isa.lanes                  # more output channels than a tile's width: A is swept again
    h = net.swish(net.conv("x", cin, channels))
    h = net.conv(h, channels, channels, 3, 1, group=channels)
    model, feeds = net.model((images, cin, size, size), net.conv(h, channels, 16))
    compiled = checked(model, feeds)
    assert BLOCKED_NOTE.format(block=isa.lanes) + "row-major input" in compiled.source
