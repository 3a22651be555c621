"""The rewrite engine: rules (a pattern, a condition, a replacement builder, and what they promise: family,
exactness, tolerance), applied greedily by FLOP reduction to a fixed point.

The paper cuts the graph at operators with none of the three algebraic properties and, within each piece,
applies the rule with the largest FLOP reduction, repeating until nothing applies. Here every match in the
graph is ranked by the FLOPs its pattern covers and tried in that order in each round (a rule's pieces never
span such an operator, so ranking globally orders each piece's rules the same way). A replacement is kept only
if it lowers the FLOPs (counted by the registry, constants folded at compile time costing nothing), or keeps
them and removes operators; decomposed-operator recognitions are kept whenever they match."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from ... import ops
from ...ir.graph import Graph, Node, Value
from ..shapes import infer_node
from .pattern import Match, Op, match

FAMILIES = ("identity", "associative", "distributive", "commutative", "layout", "decomposed")
MAX_ROUNDS = 50          # rounds of the fixed-point loop (each applies every rule it can; a graph settles in few)


@dataclass(frozen=True)
class Rule:
    """`pattern` rooted at one node, `where(match)` its further preconditions (dtype, shape, value range), and
    `build(builder, match) -> Value` the replacement for the root's output. `exact`: equal in floating point up
    to rounding of a few ulps (tolerance `rtol`, `atol` in its proof test); an inexact rule with material risk
    (overflow, rounding, NaN/Inf behaviour) is `default=False`: off unless RewriteOptions enables it. `always`:
    kept whenever it matches, not only when it saves FLOPs: a decomposed operator recognised, or an operator
    replaced by a cheaper one the FLOP count cannot tell apart (Pow(x, 0.5) as Sqrt(x))."""

    name: str
    family: str
    pattern: Op
    build: Callable[[Builder, Match], Value]
    where: Callable[[Match], bool] | None = None
    exact: bool = True
    default: bool = True
    always: bool = False
    rtol: float = 1e-6
    atol: float = 1e-6
    summary: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"rule {self.name}: family {self.family!r} is not one of {FAMILIES}")

    def matches(self, graph: Graph, node: Node) -> Match | None:
        """The first match rooted at `node` that meets the rule's condition (None: none does)."""
        for found in match(graph, self.pattern, node):
            if self.where is None or self.where(found):
                return found
        return None


@dataclass(frozen=True)
class Spellings(Rule):
    """A rule with several patterns (the ways exporters spell one operator): `pattern`, then `others`, all
    rooted at operator types `pattern` names (the engine dispatches on those). A match must also be
    self-contained: every node it covers but the root is read only inside the match and is no graph output, so
    replacing the root removes them all (patterns mark nodes read twice within them `shared`)."""

    others: tuple[Op, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        roots = set(self.pattern.types())
        stray = [p.types() for p in self.others if not set(p.types()) <= roots]
        if stray:
            raise ValueError(f"rule {self.name}: patterns rooted at {stray} outside {sorted(roots)}")

    def matches(self, graph: Graph, node: Node) -> Match | None:
        for pattern in (self.pattern, *self.others):
            for found in match(graph, pattern, node):
                if _self_contained(graph, found) and (self.where is None or self.where(found)):
                    return found
        return None


def _self_contained(graph: Graph, m: Match) -> bool:
    inside = {id(n) for n in m.covered}
    outputs = {id(v) for v in graph.outputs}
    return all(id(c) in inside and id(v) not in outputs
               for n in m.covered[1:] for v in n.outputs if v is not None for c in v.consumers)


@dataclass(frozen=True)
class RewriteOptions:
    """Which rules run: every default rule, plus the off-by-default ones when `approximate`, less `disabled`
    (rule names)."""

    approximate: bool = False
    disabled: tuple[str, ...] = ()

    def chosen(self, rules: Iterable[Rule]) -> list[Rule]:
        return [r for r in rules if (r.default or self.approximate) and r.name not in self.disabled]


@dataclass
class RewriteReport:
    """What rewriting did: FLOPs before and after, and how often each rule fired."""

    flops_before: int = 0
    flops_after: int = 0
    fired: Counter = field(default_factory=Counter)

    def as_stats(self) -> dict:
        return {"flops_before": self.flops_before, "flops_after": self.flops_after,
                "rules_fired": dict(sorted(self.fired.items()))}


class Builder:
    """Creates the replacement's nodes before the root (so they see the root's inputs), each typed by its shape
    rule (and folded when every input is a constant), and remembers them so a rejected replacement is undone."""

    def __init__(self, graph: Graph, root: Node) -> None:
        self.graph, self.root = graph, root
        self.created: list[Node] = []
        self.constants: list[Value] = []

    def op(self, op_type: str, *inputs: Value | None, **attrs: object) -> Value:
        """The output of a new `op_type` node reading `inputs` with `attrs`."""
        out = self.graph.value(self.graph.fresh_name(f"{self.root.name}_{op_type.lower()}"))
        node = self.graph.add_node(op_type, list(inputs), [out], dict(attrs),
                                   name=self.graph.fresh_name(f"{self.root.name}_{op_type}"))
        self.graph.nodes.remove(node)
        self.graph.nodes.insert(self.graph.nodes.index(self.root), node)
        self.created.append(node)
        infer_node(node)
        return out

    def const(self, array: np.ndarray | float, dtype: np.dtype | None = None) -> Value:
        """A new constant (cast to `dtype` when given)."""
        array = np.asarray(array, dtype=dtype) if dtype is not None else np.asarray(array)
        value = self.graph.add_constant(self.graph.fresh_name(f"{self.root.name}_const"), array)
        value.dtype, value.shape = array.dtype, tuple(array.shape)
        self.constants.append(value)
        return value

    def undo(self) -> None:
        for node in reversed(self.created):
            self.graph.remove_node(node)
            for v in node.outputs:
                if v is not None:
                    self.graph.values.pop(v.name, None)
        for v in self.constants:
            if not v.consumers:
                self.graph.values.pop(v.name, None)


def node_flops(node: Node) -> int:
    """FLOPs of a node at run time: none for one whose outputs are all compile-time constants."""
    if all(v is None or v.const is not None for v in node.outputs):
        return 0
    op = ops.get(node.op_type, node.domain)
    try:
        return int(op.flops(node)) if op is not None else 0
    except (TypeError, ValueError, AttributeError, IndexError):
        return 0


def graph_flops(graph: Graph) -> int:
    return sum(node_flops(n) for n in graph.nodes)


def apply(graph: Graph, rule: Rule, found: Match) -> bool:
    """Build `rule`'s replacement for `found` and keep it if it pays (see the module docstring): the root's
    output value then comes from the replacement (keeping its name, so graph outputs stay put)."""
    root = found.root
    old = root.outputs[0]
    builder = Builder(graph, root)
    new = rule.build(builder, found)
    if new is old:
        builder.undo()
        return False
    if new.dtype != old.dtype or new.shape is None or tuple(new.shape) != tuple(old.shape or ()):
        builder.undo()                  # a broadcast or a cast the rule's condition did not exclude: not the same
        return False
    removed = sum(node_flops(n) for n in going(graph, found))
    added = sum(node_flops(n) for n in builder.created)
    fewer_nodes = len(going(graph, found)) > len([n for n in builder.created if node_flops(n) or n.outputs[0].const is None])
    if not rule.always and not (added < removed or (added == removed and fewer_nodes)):
        builder.undo()
        return False
    _take_over(graph, builder, root, old, new)
    _drop_dead(graph, found.covered[1:])
    return True


def _drop_dead(graph: Graph, nodes: list[Node]) -> None:
    """Remove the pattern's inner nodes nothing reads any more (so a later match in the same round sees the
    readers that really remain)."""
    outputs = {id(v) for v in graph.outputs}
    for node in nodes:
        if node in graph.nodes and all(v is None or (not v.consumers and id(v) not in outputs) for v in node.outputs):
            graph.remove_node(node)


def going(graph: Graph, found: Match) -> list[Node]:
    """The covered nodes that go with the root: the root, and inner nodes whose every reader is covered (a
    `shared` pattern node read from outside stays, and its FLOPs are not saved)."""
    covered = {id(n) for n in found.covered}
    outputs = {id(v) for v in graph.outputs}
    return [n for n in found.covered if n is found.root or all(
        v is None or (id(v) not in outputs and all(id(c) in covered for c in v.consumers)) for v in n.outputs)]


def _take_over(graph: Graph, builder: Builder, root: Node, old: Value, new: Value) -> None:
    """Remove the root and make `old` (its output, by name) hold the replacement `new`."""
    graph.remove_node(root)
    producer = new.producer
    if producer is not None and producer in builder.created and not new.consumers and new.const is None and \
            all(o is not new for o in graph.outputs):
        producer.outputs = [old if o is new else o for o in producer.outputs]
        old.producer = producer
        graph.values.pop(new.name, None)
        producer.name = root.name                 # the node that now computes the root's value keeps its name
    elif new.const is not None and new.producer is None:
        old.set_const(new.const)
        for v in builder.constants:
            if not v.consumers:
                graph.values.pop(v.name, None)
    elif any(o is old for o in graph.outputs):
        node = graph.add_node("Identity", [new], [old], name=graph.fresh_name(f"{root.name}_Identity"))
        graph.nodes.remove(node)
        graph.nodes.insert(_position_after(graph, new), node)
    else:
        graph.replace_uses(old, new)
        graph.values.pop(old.name, None)


def _position_after(graph: Graph, value: Value) -> int:
    """The index just after `value`'s producer (0 for an input or a constant)."""
    return graph.nodes.index(value.producer) + 1 if value.producer is not None else 0


def rewrite(graph: Graph, rules: Iterable[Rule]) -> RewriteReport:
    """Apply `rules` to a fixed point (at most MAX_ROUNDS rounds); the graph is pruned and left in topological
    order."""
    rules = list(rules)
    by_root: dict[str, list[Rule]] = {}
    for rule in rules:
        for op_type in rule.pattern.types():
            by_root.setdefault(op_type, []).append(rule)
    report = RewriteReport(flops_before=graph_flops(graph))
    for _ in range(MAX_ROUNDS):
        candidates = []
        for order, node in enumerate(graph.nodes):
            for rule in by_root.get(node.op_type, ()):
                found = rule.matches(graph, node)
                if found is not None:
                    candidates.append((-sum(node_flops(n) for n in going(graph, found)), order, rule, node))
        changed = False
        for _, _, rule, node in sorted(candidates, key=lambda c: (c[0], c[1])):
            if node not in graph.nodes:
                continue
            found = rule.matches(graph, node)                  # again: an earlier rewrite may have changed it
            if found is not None and apply(graph, rule, found):
                report.fired[rule.name] += 1
                changed = True
        if not changed:
            break
    if report.fired:
        graph.prune()
        graph.toposort()
    report.flops_after = graph_flops(graph)
    return report
