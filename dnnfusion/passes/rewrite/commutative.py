"""Rewrite rules of the commutative family: products reordered so that equal factors meet (a reciprocal or a
square root squared, an absolute value taken once, a reduction's result squared on its small shape), the
published examples of the paper's table (DNNFusion, PLDI 2021, Table 4). Reordering a product of variables
can overflow or underflow where the original did not, so each is inexact and off by default unless its
condition rules that out (see engine.py for what a rule promises)."""

from __future__ import annotations

from typing import Callable

from ...ir.graph import Value
from .associative import float_result
from .engine import Builder, Rule
from .pattern import Match, Op, P, Var


def _produced_by(op_type: str) -> Callable[[Value], bool]:
    """A value computed by an `op_type` node (as its only output)."""
    return lambda v: v.producer is not None and v.producer.op_type == op_type and len(v.producer.outputs) == 1


def _reciprocal_squared(b: Builder, m: Match) -> Value:
    """Recip(A) ⊙ Recip(A ⊙ B) -> Square(Recip(A)) ⊙ Recip(B)."""
    r = b.op("Reciprocal", m["a"])
    return b.op("Mul", b.op("Mul", r, r), b.op("Reciprocal", m["b"]))


def _square_root_squared(b: Builder, m: Match) -> Value:
    """(A ⊙ √B) ⊙ (√B ⊙ C) -> A ⊙ B ⊙ C."""
    return b.op("Mul", b.op("Mul", m["a"], m["s"].producer.inputs[0]), m["c"])


def _absolute_once(b: Builder, m: Match) -> Value:
    """Abs(A) ⊙ B ⊙ Abs(C) -> Abs(A ⊙ C) ⊙ B."""
    return b.op("Mul", b.op("Abs", b.op("Mul", m["a"], m["c"])), m["b"])


def _reduction_squared(b: Builder, m: Match) -> Value:
    """(A ⊙ R) ⊙ (R ⊙ C) with R = ReduceSum(B) -> A ⊙ Square(R) ⊙ C (the square on R's small shape)."""
    r = m["r"]
    return b.op("Mul", b.op("Mul", m["a"], b.op("Mul", r, r)), m["c"])


def _reordering(name: str, pattern: Op, build: Callable[[Builder, Match], Value], summary: str) -> Rule:
    """A product reordered: inexact and off by default (the reordered product can overflow where the original
    did not), float results only."""
    return Rule(name, "commutative", pattern, build, float_result, exact=False, default=False, rtol=1e-5,
                atol=1e-6, summary=summary)


RULES: list[Rule] = [
    _reordering("reciprocal_squared",
                P("Mul", P("Reciprocal", Var("a")), P("Reciprocal", P("Mul", Var("a"), Var("b")))),
                _reciprocal_squared,
                "Recip(A)·Recip(A·B) -> Recip(A)²·Recip(B), fewer operations where A broadcasts; off: Recip(A)² "
                "overflows for |A| < 1e-19 where the original may not"),
    _reordering("square_root_squared",
                P("Mul", P("Mul", Var("a"), Var("s", _produced_by("Sqrt"))), P("Mul", Var("s"), Var("c"))),
                _square_root_squared,
                "(A·√B)·(√B·C) -> A·B·C, the square root removed; off: a negative B gives NaN before and a "
                "number after, and the reordered product can overflow where the original did not"),
    _reordering("absolute_once", P("Mul", P("Mul", P("Abs", Var("a")), Var("b")), P("Abs", Var("c"))),
                _absolute_once,
                "Abs(A)·B·Abs(C) -> Abs(A·C)·B, one Abs instead of two; off: A·C can overflow where the "
                "original product (with B between) did not"),
    _reordering("reduction_squared",
                P("Mul", P("Mul", Var("a"), Var("r", _produced_by("ReduceSum"))), P("Mul", Var("r"), Var("c"))),
                _reduction_squared,
                "(A·ReduceSum(B))·(ReduceSum(B)·C) -> A·ReduceSum(B)²·C, one full-size product fewer; off: the "
                "square can overflow where the original products did not"),
]
