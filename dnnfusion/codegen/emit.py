"""Expressions to C: literals spelled exactly, generic math names mapped to the C function of the value's type,
and sub-expressions used more than once computed once into a local (common sub-trees of a block)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

from .expr import Bin, Call, Cast, Expr, Lit, Load, Select, Unary, Var
from .mathlib import FLOAT_HELPERS

FLOAT_FUNCTIONS = {   # generic name -> (float version, double version); exp, tanh, erf: vectorizable helpers
    "exp": (FLOAT_HELPERS["exp"], "exp"), "tanh": (FLOAT_HELPERS["tanh"], "tanh"), "erf": (FLOAT_HELPERS["erf"], "erf"),
    "log": ("logf", "log"), "sqrt": ("sqrtf", "sqrt"), "abs": ("fabsf", "fabs"), "floor": ("floorf", "floor"),
    "ceil": ("ceilf", "ceil"),
    "sin": ("sinf", "sin"), "cos": ("cosf", "cos"), "tan": ("tanf", "tan"), "asin": ("asinf", "asin"),
    "acos": ("acosf", "acos"), "atan": ("atanf", "atan"), "sinh": ("sinhf", "sinh"), "cosh": ("coshf", "cosh"),
    "asinh": ("asinhf", "asinh"), "acosh": ("acoshf", "acosh"), "atanh": ("atanhf", "atanh"),
    "pow": ("powf", "pow"), "fmod": ("fmodf", "fmod"), "round": ("nearbyintf", "nearbyint"),
    "log1p": ("log1pf", "log1p"), "expm1": ("expm1f", "expm1"), "isnan": ("isnan", "isnan"),
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


class Emitter:
    """Turns expressions into C for one loop body: `locals` holds `const T tN = ...;` lines for shared
    sub-expressions (in dependency order), and `c(expr)` the text that uses them."""

    def __init__(self, prefix: str = "t") -> None:
        self.prefix = prefix
        self.names: dict[Expr, str] = {}
        self.lines: list[str] = []

    def share(self, roots: Iterable[Expr]) -> None:
        """Name every non-trivial sub-expression that occurs more than once under `roots`."""
        counts: Counter[Expr] = Counter()
        order: list[Expr] = []

        def visit(e: Expr) -> None:
            counts[e] += 1
            if counts[e] > 1:
                return
            for child in children(e):
                visit(child)
            order.append(e)

        for root in roots:
            visit(root)
        for e in order:                       # post-order: a shared node's parts are named before it
            if counts[e] > 1 and not isinstance(e, (Var, Lit)) and e not in self.names:
                text = self.c(e)
                name = f"{self.prefix}{len(self.names)}"
                self.lines.append(f"const {e.ctype} {name} = {text};")
                self.names[e] = name

    def c(self, e: Expr) -> str:
        if e in self.names:
            return self.names[e]
        if isinstance(e, Var):
            return e.name
        if isinstance(e, Lit):
            return literal(e)
        if isinstance(e, Load):
            return f"{e.buffer}[{self.c(e.index)}]"
        if isinstance(e, Cast):
            if e.ctype == "bool":
                return f"({self.c(e.x)} != 0)"
            return f"(({e.ctype})({self.c(e.x)}))"
        if isinstance(e, Unary):
            return f"({e.op}{self.c(e.x)})"
        if isinstance(e, Select):
            return f"({self.c(e.cond)} ? {self.c(e.a)} : {self.c(e.b)})"
        if isinstance(e, Bin):
            a, b = self.c(e.a), self.c(e.b)
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
            args = ", ".join(self.c(a) for a in e.args)
            arg_type = e.args[0].ctype
            if arg_type in ("float", "double"):
                name = FLOAT_FUNCTIONS[e.fn][0 if arg_type == "float" else 1]
            elif e.fn in INT_FUNCTIONS:
                name = INT_FUNCTIONS[e.fn]
            else:
                name = f"df_{e.fn}"           # integer helpers defined in the runtime prelude
            return f"{name}({args})"
        raise TypeError(f"cannot emit {type(e).__name__}")
