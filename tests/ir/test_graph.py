"""Graph structure: topological order, cloning, pruning, validation."""

import numpy as np
import pytest

from dnnfusion.errors import InvalidModelError
from dnnfusion.ir.graph import Graph


def chain() -> Graph:
    g = Graph("chain")
    x = g.value("x")
    x.dtype, x.shape = np.dtype(np.float32), (2, 3)
    g.inputs.append(x)
    a, b, y = g.value("a"), g.value("b"), g.value("y")
    g.add_node("Relu", [x], [a], name="relu")
    g.add_node("Neg", [a], [b], name="neg")
    g.add_node("Abs", [b], [y], name="abs")
    g.outputs.append(y)
    return g


def test_toposort_orders_producers_first():
    g = chain()
    g.nodes.reverse()
    g.toposort()
    assert [n.name for n in g.nodes] == ["relu", "neg", "abs"]


def test_toposort_detects_cycles():
    g = chain()
    relu = g.nodes[0]
    relu.inputs = [g.values["y"]]
    g.values["y"].consumers.append(relu)
    with pytest.raises(InvalidModelError, match="cycle"):
        g.toposort()


def test_clone_is_independent():
    g = chain()
    c = g.clone()
    c.remove_node(c.nodes[1])
    assert len(g.nodes) == 3 and len(c.nodes) == 2
    assert g.values["a"].consumers[0].name == "neg"


def test_prune_drops_dead_nodes():
    g = chain()
    dead = g.value("dead")
    g.add_node("Exp", [g.values["x"]], [dead], name="exp")
    assert g.prune() == 1
    assert "dead" not in g.values and g.values["x"].consumers == [g.nodes[0]]


def test_validate_reports_undefined_input():
    g = chain()
    ghost = g.value("ghost")
    g.add_node("Relu", [ghost], [g.value("z")], name="reads_ghost")
    with pytest.raises(InvalidModelError, match="reads_ghost.*ghost"):
        g.validate()


def test_replace_uses_rewires_consumers_and_outputs():
    g = chain()
    y2 = g.value("y2")
    g.add_node("Identity", [g.values["b"]], [y2], name="id")
    g.replace_uses(g.values["y"], y2)
    assert g.outputs == [y2]
