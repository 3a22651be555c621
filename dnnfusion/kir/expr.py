"""The kernel IR: index and scalar expressions that operators describe themselves in, and that block lowering
composes (a Transpose is a permuted index, a Reshape a re-linearised one, a Concat a select) before C is emitted.

Expressions are immutable and hashable, so equal sub-trees are one object to the emitter (computed once).
Constructors fold what they can (x*1, x+0, constant arithmetic), which keeps composed index maps small."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np

INDEX = "int64_t"

C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.int64): "int64_t",
           np.dtype(np.int32): "int32_t", np.dtype(np.int16): "int16_t", np.dtype(np.int8): "int8_t",
           np.dtype(np.uint8): "uint8_t", np.dtype(np.uint16): "uint16_t", np.dtype(np.uint32): "uint32_t",
           np.dtype(np.uint64): "uint64_t", np.dtype(np.bool_): "bool"}


def ctype(dtype: np.dtype) -> str | None:
    """The C type of a numpy dtype, or None when codegen does not handle it (float16, strings...)."""
    return C_TYPES.get(np.dtype(dtype))


class Expr:
    """Base of every expression; `ctype` is the C type of its value. Equality is structural and the hash is
    computed once per node, so comparing or hashing a large shared tree costs no more than its top."""

    ctype: str

    def _key(self) -> tuple:
        return (type(self),) + tuple(getattr(self, f.name) for f in fields(self))

    def __hash__(self) -> int:
        cached = self.__dict__.get("_hash")
        if cached is None:
            _hash_tree(self)
            cached = self.__dict__["_hash"]
        return cached

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(self) is not type(other) or hash(self) != hash(other):
            return False
        return _same_tree(self, other)  # type: ignore[arg-type]

    # Operator overloads build expressions, so op descriptions read like arithmetic.
    def __add__(self, other: "Expr | int | float") -> "Expr":
        return binary("+", self, lift(other, self.ctype))

    def __radd__(self, other: "int | float") -> "Expr":
        return binary("+", lift(other, self.ctype), self)

    def __sub__(self, other: "Expr | int | float") -> "Expr":
        return binary("-", self, lift(other, self.ctype))

    def __rsub__(self, other: "int | float") -> "Expr":
        return binary("-", lift(other, self.ctype), self)

    def __mul__(self, other: "Expr | int | float") -> "Expr":
        return binary("*", self, lift(other, self.ctype))

    def __rmul__(self, other: "int | float") -> "Expr":
        return binary("*", lift(other, self.ctype), self)

    def __truediv__(self, other: "Expr | int | float") -> "Expr":
        return binary("/", self, lift(other, self.ctype))

    def __neg__(self) -> "Expr":
        return Unary("-", self, self.ctype)


def operands(e: Expr) -> list[Expr]:
    """The sub-expressions `e` holds directly (fields that are expressions or tuples of them)."""
    out: list[Expr] = []
    for f in fields(e):
        v = getattr(e, f.name)
        if isinstance(v, Expr):
            out.append(v)
        elif isinstance(v, tuple):
            out.extend(x for x in v if isinstance(x, Expr))
    return out


T = TypeVar("T")


def postorder(root: Expr, leaf: Callable[[Expr], T | None], combine: Callable[[Expr, dict[int, T]], T],
              kids: Callable[[Expr], Sequence[Expr]] = operands) -> T:
    """Fold a shared expression tree children first, each distinct node once, with an explicit stack (an inlined
    chain of thousands of operators must not recurse): `leaf(x)` gives a node's result without looking inside
    (None: look inside), `combine(x, results)` builds it from its children's results (by id)."""
    results: dict[int, T] = {}
    stack: list[tuple[Expr, bool]] = [(root, False)]
    while stack:
        x, ready = stack.pop()
        if id(x) in results:
            continue
        value = leaf(x)
        if value is not None:
            results[id(x)] = value
        elif ready:
            results[id(x)] = combine(x, results)
        else:
            stack.append((x, True))
            stack.extend((k, False) for k in kids(x) if id(k) not in results)
    return results[id(root)]


def walk(e: Expr) -> Iterator[Expr]:
    """Every distinct sub-expression of `e` once, each before its children (shared sub-trees visited once)."""
    stack, seen = [e], set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        stack.extend(operands(x))


def variables(e: Expr) -> set[str]:
    """The names of the loop variables `e` reads."""
    return {x.name for x in walk(e) if isinstance(x, Var)}


def rebuilt(e: Expr, done: dict[int, Expr]) -> Expr:
    """`e` with each sub-expression replaced by its substitute in `done` (by id; itself when none changed): the
    `combine` of a `postorder` that rewrites some nodes and rebuilds their ancestors."""
    changes: dict[str, object] = {}
    for f in fields(e):
        v = getattr(e, f.name)
        if isinstance(v, Expr) and done[id(v)] is not v:
            changes[f.name] = done[id(v)]
        elif isinstance(v, tuple) and any(isinstance(x, Expr) and done[id(x)] is not x for x in v):
            changes[f.name] = tuple(done[id(x)] if isinstance(x, Expr) else x for x in v)
    return replace(e, **changes) if changes else e


def assume(root: Expr, cond: Expr, value: bool) -> Expr:
    """`root` with every select on `cond` (structurally equal) replaced by the branch it takes when `cond` is
    `value`; sub-trees without one are kept as they are (shared, not copied)."""
    def combine(x: Expr, done: dict[int, Expr]) -> Expr:
        if isinstance(x, Select) and x.cond == cond:
            return done[id(x.a)] if value else done[id(x.b)]
        return rebuilt(x, done)
    return postorder(root, lambda x: x if not operands(x) else None, combine)


def _hash_tree(root: Expr) -> None:
    """Cache the hash of `root` and of every unhashed sub-expression, children first, with an explicit stack:
    an inlined chain of thousands of operators must not recurse once per level."""
    stack = [root]
    while stack:
        e = stack[-1]
        pending = [x for x in operands(e) if "_hash" not in x.__dict__]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        if "_hash" not in e.__dict__:
            object.__setattr__(e, "_hash", hash(e._key()))


def _same_fields(a: Expr, b: Expr, pairs: list[tuple[Expr, Expr]]) -> bool:
    """Whether a and b agree on every non-expression field; their sub-expression pairs go onto `pairs`."""
    for f in fields(a):
        u, v = getattr(a, f.name), getattr(b, f.name)
        if isinstance(u, tuple) and isinstance(v, tuple) and len(u) == len(v):
            items = list(zip(u, v))
        else:
            items = [(u, v)]
        for x, y in items:
            if isinstance(x, Expr) and isinstance(y, Expr):
                pairs.append((x, y))
            elif x is not y and x != y:
                return False
    return True


def _same_tree(a: Expr, b: Expr) -> bool:
    """Structural equality without recursion (deep inlined chains); shared pairs are compared once."""
    stack, seen = [(a, b)], set()
    while stack:
        x, y = stack.pop()
        if x is y or (id(x), id(y)) in seen:
            continue
        seen.add((id(x), id(y)))
        if type(x) is not type(y) or hash(x) != hash(y) or not _same_fields(x, y, stack):
            return False
    return True


@dataclass(frozen=True, eq=False)
class Var(Expr):
    """A loop variable (always an index); `below`, when not 0, a bound known to hold (0 <= var < below), which
    lets `floordiv` and `mod` by a multiple of it take a blocked index apart (a vector lane within a block)."""

    name: str
    ctype: str = INDEX
    below: int = 0


@dataclass(frozen=True, eq=False)
class Lit(Expr):
    """A literal of the given C type."""

    value: float | int | bool
    ctype: str = INDEX


@dataclass(frozen=True, eq=False)
class Bin(Expr):
    op: str                 # + - * / % min max, comparisons, && ||, floordiv, pow, fmod
    a: Expr
    b: Expr
    ctype: str


@dataclass(frozen=True, eq=False)
class Unary(Expr):
    op: str                 # "-" or "!"
    x: Expr
    ctype: str


@dataclass(frozen=True, eq=False)
class Call(Expr):
    """A C math function (or one of the runtime's helpers) applied to arguments."""

    fn: str
    args: tuple[Expr, ...]
    ctype: str


@dataclass(frozen=True, eq=False)
class Select(Expr):
    cond: Expr
    a: Expr
    b: Expr
    ctype: str


@dataclass(frozen=True, eq=False)
class Cast(Expr):
    x: Expr
    ctype: str


@dataclass(frozen=True, eq=False)
class Load(Expr):
    """buffer[index]; buffers are named by the code generator, never after anything in the model."""

    buffer: str
    index: Expr
    ctype: str


def lift(value: "Expr | int | float | bool", ctype_: str) -> Expr:
    return value if isinstance(value, Expr) else Lit(value, ctype_)


def lit(value: float | int | bool, ctype_: str) -> Lit:
    """A literal with its value normalised to the C type (so equal literals hash equal)."""
    if ctype_ == "bool":
        return Lit(bool(value), ctype_)
    if ctype_ in ("float", "double"):
        return Lit(float(value), ctype_)
    return Lit(int(value), ctype_)


def _const(e: Expr) -> float | int | bool | None:
    return e.value if isinstance(e, Lit) else None


COMPARE = {"<", "<=", ">", ">=", "==", "!="}


def binary(op: str, a: Expr, b: Expr, ctype_: str | None = None) -> Expr:
    """a op b, folded where both sides are literals or one side is a neutral element."""
    out = "bool" if op in COMPARE or op in ("&&", "||") else (ctype_ or a.ctype)
    ca, cb = _const(a), _const(b)
    integer = out not in ("float", "double", "bool")
    if ca is not None and cb is not None and integer and op in ("+", "-", "*", "min", "max", "floordiv", "mod"):
        value = {"+": ca + cb, "-": ca - cb, "*": ca * cb, "min": min(ca, cb), "max": max(ca, cb),
                 "floordiv": ca // cb if cb else 0, "mod": ca % cb if cb else 0}[op]
        return Lit(int(value), out)
    if op == "+" and cb == 0 or op == "-" and cb == 0 or op == "*" and cb == 1 or op == "floordiv" and cb == 1:
        return a
    if op == "+" and ca == 0 or op == "*" and ca == 1:
        return b
    if integer and op == "*" and (ca == 0 or cb == 0):
        return Lit(0, out)
    if integer and op == "mod" and cb == 1:
        return Lit(0, out)
    if integer and op == "+":
        joined = _rejoin(a, b) or _rejoin(b, a)
        if joined is not None:
            return joined
    if integer and op in ("floordiv", "mod") and isinstance(cb, int) and cb > 1:
        split = _lane_split(a, cb)
        if split is not None:
            return split[0] if op == "floordiv" else split[1]
    return Bin(op, a, b, out)


def _lane_split(e: Expr, block: int) -> tuple[Expr, Expr] | None:
    """(e floordiv block, e mod block) where e is q * block + lane with a lane bounded below `block` (`Var.below`):
    a channel index within a blocked layout's vector of channels. None for any other form."""
    def lane(x: Expr) -> bool:
        return isinstance(x, Var) and 0 < x.below <= block
    if lane(e):
        return Lit(0, e.ctype), e
    if not (isinstance(e, Bin) and e.op == "+"):
        return None
    for high, low in ((e.a, e.b), (e.b, e.a)):
        if not lane(low):
            continue
        if isinstance(high, Lit) and isinstance(high.value, int) and high.value % block == 0:
            return Lit(high.value // block, e.ctype), low
        if isinstance(high, Bin) and high.op == "*" and isinstance(high.b, Lit) and high.b.value == block:
            return high.a, low
    return None


def _rejoin(low: Expr, high: Expr) -> Expr | None:
    """Undo an unravel: x mod c + (x floordiv c) * c is x, and x mod c1 + ((x floordiv c1) mod c2) * c1 is
    x mod (c1 * c2) (index values are never negative). So a Reshape between equal-sized views costs nothing."""
    if not (isinstance(low, Bin) and low.op == "mod" and isinstance(low.b, Lit) and isinstance(high, Bin)
            and high.op == "*" and high.b == low.b and isinstance(high.a, Bin)):
        return None
    x, c = low.a, low.b
    inner = high.a
    if inner.op == "floordiv" and inner.a == x and inner.b == c:
        return x
    if inner.op == "mod" and isinstance(inner.a, Bin) and inner.a.op == "floordiv" and inner.a.a == x and \
            inner.a.b == c and isinstance(inner.b, Lit):
        return binary("mod", x, Lit(c.value * inner.b.value, c.ctype))
    return None


def call(fn: str, *args: Expr, ctype_: str | None = None) -> Expr:
    return Call(fn, tuple(args), ctype_ or args[0].ctype)


def select(cond: Expr, a: Expr, b: Expr) -> Expr:
    c = _const(cond)
    if c is not None:
        return a if c else b
    return a if a == b else Select(cond, a, b, a.ctype)


def cast(x: Expr, ctype_: str) -> Expr:
    if x.ctype == ctype_:
        return x
    if isinstance(x, Lit):
        return lit(x.value, ctype_)
    return Cast(x, ctype_)


def floordiv(a: Expr, b: int) -> Expr:
    """Index floor division by a positive constant (indices are never negative, so C division is floor)."""
    return binary("floordiv", a, Lit(b))


def mod(a: Expr, b: int) -> Expr:
    return binary("mod", a, Lit(b))


# --- index maps -------------------------------------------------------------------------------------

Index = tuple[Expr, ...]


def strides(shape: Sequence[int]) -> list[int]:
    """Row-major element strides."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def linear(index: Sequence[Expr], shape: Sequence[int]) -> Expr:
    """The row-major offset of a multi-index (a size-1 dimension contributes nothing), summed from the
    innermost axis out so that an unravelled offset folds back into itself (see `_rejoin`)."""
    total: Expr = Lit(0)
    for i, (e, s) in reversed(list(enumerate(zip(index, strides(shape))))):
        if shape[i] != 1:
            total = total + e * s
    return total


def blocked_linear(index: Sequence[Expr], shape: Sequence[int], block: int) -> Expr:
    """The offset of a multi-index (N, C, *spatial) in the channel-blocked layout [N][C / block][*spatial][block]
    (NCHW16c for block 16): each run of `block` channels of a pixel is one vector, contiguous."""
    n, c, *spatial = index
    return linear((n, floordiv(c, block), *spatial, mod(c, block)), (shape[0], shape[1] // block, *shape[2:], block))


def unravel(offset: Expr, shape: Sequence[int]) -> Index:
    """The multi-index of a row-major offset."""
    out = []
    for i, s in enumerate(strides(shape)):
        if shape[i] == 1:
            out.append(Lit(0))
        else:
            e = floordiv(offset, s) if s != 1 else offset
            out.append(mod(e, shape[i]) if i > 0 else e)
    return tuple(out)


def reshape_index(index: Sequence[Expr], out_shape: Sequence[int], in_shape: Sequence[int]) -> Index:
    """Where a Reshape's output element `index` comes from in its input: same offset, other shape."""
    if list(out_shape) == list(in_shape):
        return tuple(index)
    return unravel(linear(index, out_shape), in_shape)


def broadcast_index(index: Sequence[Expr], out_shape: Sequence[int], in_shape: Sequence[int]) -> Index:
    """The input's multi-index for an output index under numpy broadcasting (right-aligned, size-1 axes pinned)."""
    skip = len(out_shape) - len(in_shape)
    return tuple(Lit(0) if d == 1 else index[skip + i] for i, d in enumerate(in_shape))


def numel(shape: Sequence[int]) -> int:
    return int(math.prod(shape))
