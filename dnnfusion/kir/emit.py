"""Expressions to C: literals spelled exactly, generic math names mapped to the C function of the value's type,
and sub-expressions used more than once computed once into a local (common sub-trees of a block)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

from .expr import Bin, Call, Cast, Expr, Lit, Load, Select, Unary, Var, postorder
from .mathlib import FLOAT_HELPERS

FLOAT_FUNCTIONS = {   # generic name -> (float version, double version); exp, tanh, erf, log, log1p: vectorizable helpers
    "exp": (FLOAT_HELPERS["exp"], "exp"), "tanh": (FLOAT_HELPERS["tanh"], "tanh"), "erf": (FLOAT_HELPERS["erf"], "erf"),
    "log": (FLOAT_HELPERS["log"], "log"), "sqrt": ("sqrtf", "sqrt"), "abs": ("fabsf", "fabs"), "floor": ("floorf", "floor"),
    "ceil": ("ceilf", "ceil"),
    "sin": ("sinf", "sin"), "cos": ("cosf", "cos"), "tan": ("tanf", "tan"), "asin": ("asinf", "asin"),
    "acos": ("acosf", "acos"), "atan": ("atanf", "atan"), "sinh": ("sinhf", "sinh"), "cosh": ("coshf", "cosh"),
    "asinh": ("asinhf", "asinh"), "acosh": ("acoshf", "acosh"), "atanh": ("atanhf", "atanh"),
    "pow": ("powf", "pow"), "fmod": ("fmodf", "fmod"), "round": ("nearbyintf", "nearbyint"),
    "log1p": (FLOAT_HELPERS["log1p"], "log1p"), "sigmoid": (FLOAT_HELPERS["sigmoid"], "df_sigmoid"), "expm1": ("expm1f", "expm1"), "isnan": ("isnan", "isnan"),
    "isinf": ("isinf", "isinf"), "signbit": ("signbit", "signbit"), "fmax": ("fmaxf", "fmax"),
    "fmin": ("fminf", "fmin"), "trunc": ("truncf", "trunc"),
}
INT_FUNCTIONS = {"abs": "llabs"}
INFIX = {"+", "-", "*", "/", "%", "<", "<=", ">", ">=", "==", "!=", "&&", "||", "&", "|", "^", "<<", ">>"}


def literal(e: Lit) -> str:
    if e.ctype == "bool":
        return "1" if e.value else "0"
    if e.ctype in ("float", "double"):
        v = float(e.value)
        if math.isnan(v):
            return "NAN"
        if math.isinf(v):
            return "INFINITY" if v > 0 else "(-INFINITY)"
        text = repr(v)
        return f"{text}f" if e.ctype == "float" else text
    v = int(e.value)
    if e.ctype in ("int64_t", "uint64_t"):
        return f"INT64_C({v})" if v < 0 or v > 2**31 - 1 else str(v)
    return str(v)


def children(e: Expr) -> tuple[Expr, ...]:
    if isinstance(e, Bin):
        return (e.a, e.b)
    if isinstance(e, (Unary, Cast)):
        return (e.x,)
    if isinstance(e, Call):
        return e.args
    if isinstance(e, Select):
        return (e.cond, e.a, e.b)
    if isinstance(e, Load):
        return (e.index,)
    return ()


MAX_INLINE_DEPTH = 24   # operator levels one C expression may nest: a node that reaches it is named into a local


class Emitter:
    """Turns expressions into C for one loop body: `locals` holds `const T tN = ...;` lines for shared
    sub-expressions (in dependency order), and `c(expr)` the text that uses them."""

    def __init__(self, prefix: str = "t") -> None:
        self.prefix = prefix
        self.names: dict[Expr, str] = {}
        self.lines: list[str] = []

    def share(self, roots: Iterable[Expr]) -> None:
        """Name every non-trivial sub-expression that occurs more than once under `roots`, and any that nests
        MAX_INLINE_DEPTH unnamed levels: a long fused chain becomes a sequence of locals, not one C expression
        thousands of levels deep (slow for gcc, and for anything that walks it recursively)."""
        counts, order = _postorder(roots)
        depth: dict[Expr, int] = {}
        for e in order:                       # post-order: a shared node's parts are named before it
            if isinstance(e, (Var, Lit)):
                depth[e] = 0
                continue
            level = 1 + max((depth.get(x, 0) for x in children(e)), default=0)
            if (counts[e] > 1 or level >= MAX_INLINE_DEPTH) and e not in self.names:
                text = self.c(e)
                name = f"{self.prefix}{len(self.names)}"
                self.lines.append(f"const {e.ctype} {name} = {text};")
                self.names[e] = name
            depth[e] = 0 if e in self.names else level

    def c(self, e: Expr) -> str:
        """The C text of `e`, using the locals named so far (children first, with an explicit stack)."""
        return postorder(e, self._leaf, lambda x, texts: self._format(x, [texts[id(k)] for k in children(x)]),
                         children)

    def _leaf(self, e: Expr) -> str | None:
        """The text of a named local, a variable or a literal; None for anything built from children."""
        if e in self.names:
            return self.names[e]
        if isinstance(e, Var):
            return e.name
        if isinstance(e, Lit):
            return literal(e)
        return None

    def _format(self, e: Expr, args: list[str]) -> str:
        """The C text of one node given the texts of its children (in `children` order)."""
        if isinstance(e, Load):
            return f"{e.buffer}[{args[0]}]"
        if isinstance(e, Cast):
            if e.ctype == "bool":
                return f"({args[0]} != 0)"
            return f"(({e.ctype})({args[0]}))"
        if isinstance(e, Unary):     # -(-1.5f), never --1.5f (a decrement)
            return f"({e.op}({args[0]}))" if args[0][:1] in "+-" else f"({e.op}{args[0]})"
        if isinstance(e, Select):
            return f"({args[0]} ? {args[1]} : {args[2]})"
        if isinstance(e, Bin):
            a, b = args
            if e.op in INFIX:
                return f"({a} {e.op} {b})"
            if e.op == "floordiv":
                return f"({a} / {b})"
            if e.op == "mod":
                return f"({a} % {b})"
            if e.op in ("min", "max"):
                cmp = "<" if e.op == "min" else ">"
                return f"(({a}) {cmp} ({b}) ? ({a}) : ({b}))"
            raise ValueError(f"unknown binary operator {e.op}")
        if isinstance(e, Call):
            arg_type = e.args[0].ctype
            if arg_type in ("float", "double"):
                name = FLOAT_FUNCTIONS[e.fn][0 if arg_type == "float" else 1]
            elif e.fn in INT_FUNCTIONS:
                name = INT_FUNCTIONS[e.fn]
            else:
                name = f"df_{e.fn}"           # integer helpers defined in the runtime prelude
            return f"{name}({', '.join(args)})"
        raise TypeError(f"cannot emit {type(e).__name__}")


def _postorder(roots: Iterable[Expr]) -> tuple[Counter[Expr], list[Expr]]:
    """How often each sub-expression occurs under `roots` (a repeated one is not descended again) and the
    distinct ones in post-order, children left to right; iterative, so any depth works."""
    counts: Counter[Expr] = Counter()
    order: list[Expr] = []
    for root in roots:
        stack: list[tuple[Expr, bool]] = [(root, False)]
        while stack:
            e, done = stack.pop()
            if done:
                order.append(e)
                continue
            counts[e] += 1
            if counts[e] > 1:
                continue
            stack.append((e, True))
            stack.extend((x, False) for x in reversed(children(e)))
    return counts, order
