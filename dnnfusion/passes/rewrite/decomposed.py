"""Decomposed operators recognised as one: an exporter's chain for an activation or a normalisation becomes the
single operator it spells, whose generated code computes it the cheap way (a normalisation in one pass over
each row) and which fusion sees as one operator instead of several."""

from __future__ import annotations

from ...ir.graph import Value
from .engine import Builder, Rule
from .pattern import Match, P, Var, is_float


def _same_float_type(m: Match) -> bool:
    x, y = m["x"], m.root.outputs[0]
    return is_float(x) and x.dtype == y.dtype and tuple(x.shape) == tuple(y.shape)


def _mish(b: Builder, m: Match) -> Value:
    return b.op("Mish", m["x"])


RULES = [
    Rule("mish", "decomposed", P("Mul", Var("x"), P("Tanh", P("Softplus", Var("x")))), _mish, _same_float_type,
         always=True, rtol=1e-5, atol=1e-6,
         summary="x * tanh(softplus(x)) -> Mish(x): one exp and one division instead of an exp, a log1p and a tanh"),
]
