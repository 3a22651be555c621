"""Seeded generator of random, valid ONNX graphs for differential testing.

The generator is data-driven: `OPS` maps a name to a builder and a weight; a builder takes the graph under
construction, picks operands from its pool of values (graph inputs, initializers, earlier node outputs), emits
one or more nodes with attributes valid per the ONNX spec, or raises `Skip` when it does not apply. Output
shapes and types come from ONNX's own shape inference, so the generator never guesses them. Values carry a
bound on their magnitude; an operand over the bound is first squashed (Tanh, Sigmoid, Clip, ...) so that Exp,
Pow and sums stay far from overflow and from cancellations larger than the comparison tolerance.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
ANY = (F, I64, BOOL)
NUMERIC = (F, I64)
OPSET = 20
IR_VERSION = 10
MAX_NUMEL = 2048           # no value larger than this: compile and run stay fast
MAX_RANK = 5
WIDE_CHANCE = 0.12         # how often a new input gets a wide last dim (9..WIDE_MAX) instead of 1..8
WIDE_MAX = 40
LIMIT = 8.0                # most ops see operands within +-LIMIT
INT_LIMIT = 10_000
FEED_BOUND = 2.0           # float feeds are uniform in [-FEED_BOUND, FEED_BOUND]
INT_FEED_BOUND = 5
INT64_MAX, INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min
NP_TYPES = {F: np.float32, I64: np.int64, BOOL: np.bool_}


class Skip(Exception):
    """A builder does not apply to the graph as it is (no fitting operand, or ONNX rejects the node)."""


@dataclass
class Val:
    """A value of the graph under construction: static shape, element type and a bound on |elements|."""

    name: str
    shape: tuple[int, ...]
    dtype: int
    bound: float
    const: bool = False

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class FuzzGraph:
    """One generated model with what the differential check needs: static input shapes and the ops used."""

    seed: int
    model: onnx.ModelProto
    input_shapes: dict[str, tuple[int, ...]]
    op_sequence: list[str] = field(default_factory=list)

    @property
    def ops(self) -> set[str]:
        return set(self.op_sequence)


class GraphBuilder:
    """The mutable state of one graph under construction: nodes, inputs, initializers and the value pool."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[Val] = []
        self.inits: dict[str, TensorProto] = {}
        self.pool: list[Val] = []
        self._count = 0

    def fresh(self, prefix: str) -> str:
        """A new unique name."""
        self._count += 1
        return f"{prefix}{self._count}"

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def choice(self, items: Sequence):
        return items[int(self.rng.integers(len(items)))]

    def add_input(self, shape: Sequence[int], dtype: int = F) -> Val:
        """A new graph input, in the pool."""
        bound = FEED_BOUND if dtype == F else INT_FEED_BOUND if dtype == I64 else 1.0
        v = Val(self.fresh("in"), tuple(int(d) for d in shape), dtype, bound)
        self.inputs.append(v)
        self.pool.append(v)
        return v

    def const(self, array: np.ndarray, pool: bool = False) -> Val:
        """A new initializer; in the pool (usable as an operand) only when asked."""
        array = np.asarray(array)
        name = self.fresh("c")
        self.inits[name] = numpy_helper.from_array(array, name)
        dtype = helper.np_dtype_to_tensor_dtype(array.dtype)
        bound = float(np.abs(array).max(initial=0)) if array.dtype != np.bool_ else 1.0
        v = Val(name, tuple(array.shape), dtype, bound, const=True)
        if pool:
            self.pool.append(v)
        return v

    def random_array(self, shape: Sequence[int], dtype: int, low: float = -FEED_BOUND,
                     high: float = FEED_BOUND) -> np.ndarray:
        """Seeded constant data of a shape and element type."""
        if dtype == F:
            return self.rng.uniform(low, high, tuple(shape)).astype(np.float32)
        if dtype == I64:
            return self.rng.integers(-INT_FEED_BOUND, INT_FEED_BOUND + 1, tuple(shape)).astype(np.int64)
        return self.rng.random(tuple(shape)) < 0.5

    def ints(self, values: Iterable[int]) -> str:
        """A 1-D int64 initializer (shape, axes, pads operands); not in the pool."""
        return self.const(np.array(list(values), np.int64)).name

    def emit(self, op: str, inputs: Sequence[str], bound: float | Sequence[float], n_out: int = 1,
             pool: bool = True, **attrs) -> list[Val]:
        """Append a node after checking it with ONNX shape inference; its outputs join the pool."""
        outs = [self.fresh("v") for _ in range(n_out)]
        node = helper.make_node(op, list(inputs), outs, name=self.fresh(f"n_{op}_"), **attrs)
        types = self._infer(node)
        bounds = list(bound) if isinstance(bound, Sequence) else [bound] * n_out
        vals = []
        for name, (dtype, shape), b in zip(outs, types, bounds):
            if len(shape) > MAX_RANK or int(np.prod(shape, dtype=np.int64)) > MAX_NUMEL or 0 in shape:
                raise Skip(f"{op} output {shape} too large or empty")
            vals.append(Val(name, shape, dtype, float(b) if dtype == F else b if dtype == I64 else 1.0))
        self.nodes.append(node)
        if pool:
            self.pool.extend(vals)
        return vals

    def _infer(self, node: onnx.NodeProto) -> list[tuple[int, tuple[int, ...]]]:
        """Types and static shapes of `node`'s outputs in the current graph (strict ONNX inference)."""
        graph = helper.make_graph(self.nodes + [node], "g", [_vi(v) for v in self.inputs], [],
                                  list(self.inits.values()))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except Exception as e:  # noqa: BLE001 - any inference failure means the node is not valid here
            raise Skip(str(e).splitlines()[0] if str(e) else type(e).__name__) from e
        known = {vi.name: vi.type.tensor_type for vi in inferred.graph.value_info}
        result = []
        for name in node.output:
            t = known.get(name)
            if t is None or not t.HasField("shape") or not all(d.HasField("dim_value") for d in t.shape.dim):
                raise Skip(f"{node.op_type}: no static shape for {name}")
            result.append((t.elem_type, tuple(int(d.dim_value) for d in t.shape.dim)))
        return result

    def pick(self, dtypes: Sequence[int] = (F,), pred: Callable[[Val], bool] | None = None,
             limit: float = LIMIT, make: Callable[[GraphBuilder], Sequence[int]] | None = None) -> Val:
        """An operand from the pool (biased to recent values, so chains grow deep); a fresh graph input of
        shape `make(self)` when nothing fits or by chance; squashed first when over `limit`."""
        cands = [v for v in self.pool if v.dtype in dtypes and (pred is None or pred(v))]
        if make is not None and (not cands or self.chance(0.12)):
            for _ in range(4):
                shape = make(self)
                if pred is None or pred(Val("", shape, dtypes[0], FEED_BOUND)):
                    return self.add_input(shape, dtypes[0])
        if not cands:
            raise Skip("no operand fits")
        recent = cands[-3:]
        v = self.choice(recent) if self.chance(0.5) else self.choice(cands)
        return self.tame(v, limit)

    def tame(self, v: Val, limit: float = LIMIT) -> Val:
        """`v`, or `v` through a squashing op when its bound exceeds `limit`."""
        if v.dtype == I64 and v.bound > INT_LIMIT:
            raise Skip("integer operand too large")
        if v.dtype != F or v.bound <= limit:
            return v
        kind = self.choice(["Tanh", "Sigmoid", "Clip", "Erf", "Softsign", "Scale"])
        if kind == "Clip":
            lo, hi = self.const(np.float32(-limit / 2)), self.const(np.float32(limit / 2))
            return self.emit("Clip", [v.name, lo.name, hi.name], limit / 2)[0]
        if kind == "Scale":
            c = self.const(np.float32(limit / (2 * v.bound)))
            return self.emit("Mul", [v.name, c.name], limit / 2)[0]
        return self.emit(kind, [v.name], 1.0)[0]

    def broadcast_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """A random shape that broadcasts with `shape` (suffix, ones, stretched ones, a new leading dim)."""
        r = len(shape)
        keep = r if self.chance(0.5) else int(self.rng.integers(0, r + 1))
        dims = []
        for d in shape[r - keep:]:
            if d == 1 and self.chance(0.25):
                dims.append(int(self.rng.integers(2, 4)))
            else:
                dims.append(1 if self.chance(0.3) else d)
        if keep == r and r < 4 and self.chance(0.1):
            dims.insert(0, int(self.rng.integers(1, 4)))
        out = tuple(dims)
        if int(np.prod(np.broadcast_shapes(tuple(shape), out), dtype=np.int64)) > MAX_NUMEL:
            return tuple(shape)
        return out

    def operand(self, shape: Sequence[int], dtype: int, limit: float = LIMIT, low: float = -FEED_BOUND,
                high: float = FEED_BOUND) -> Val:
        """A second operand broadcastable with `shape`: a pool value, a new initializer or a new input."""
        fits = [v for v in self.pool if v.dtype == dtype and _broadcasts(v.shape, shape)]
        r = self.rng.random()
        if fits and r < 0.4:
            return self.tame(self.choice(fits), limit)
        target = self.broadcast_shape(shape)
        if r < 0.8 or dtype == BOOL:
            return self.const(self.random_array(target, dtype, low, high), pool=True)
        return self.add_input(target, dtype)


def _vi(v: Val) -> onnx.ValueInfoProto:
    """A graph input/output declaration for a value."""
    return helper.make_tensor_value_info(v.name, v.dtype, list(v.shape))


def _broadcasts(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether two shapes broadcast together to at most MAX_NUMEL elements."""
    try:
        out = np.broadcast_shapes(tuple(a), tuple(b))
    except ValueError:
        return False
    return int(np.prod(out, dtype=np.int64)) <= MAX_NUMEL


def _random_shape(g: GraphBuilder, rank: int | None = None, lo: int = 1, hi: int = 8) -> tuple[int, ...]:
    """Small random dims (1..8 by default), ones common so that broadcasting happens; now and then a wide last
    dim (9..40) so that vectorised loops run their main body and their tail."""
    rank = int(g.rng.integers(1, 5)) if rank is None else rank
    dims = [1 if g.chance(0.15) else int(g.rng.integers(lo, hi + 1)) for _ in range(rank)]
    if g.chance(WIDE_CHANCE):
        dims[-1] = int(g.rng.integers(9, WIDE_MAX + 1))
    while int(np.prod(dims)) > MAX_NUMEL // 4:
        dims[int(np.argmax(dims))] //= 2
    return tuple(max(d, 1) for d in dims)


def _spatial_shape(g: GraphBuilder) -> tuple[int, ...]:
    """N, C, spatial... for Conv and pooling inputs."""
    rank = int(g.rng.integers(3, 5))
    top = WIDE_MAX if g.chance(WIDE_CHANCE) else 8
    return (int(g.rng.integers(1, 3)), int(g.rng.integers(1, 5))) + tuple(
        int(g.rng.integers(2, top + 1)) for _ in range(rank - 2))


# ---------------------------------------------------------------------------------------------------------------
# Elementwise builders

def _unary(op: str, bound: Callable[[float], float], limit: float = LIMIT, dtypes: Sequence[int] = (F,),
           attrs: Callable[[GraphBuilder], dict] | None = None,
           pre: Callable[[GraphBuilder, Val], Val] | None = None) -> Callable[[GraphBuilder], None]:
    """A builder for a one-input elementwise op; `pre` guards the operand (Abs before Sqrt)."""
    def build(g: GraphBuilder) -> None:
        x = g.pick(dtypes, limit=limit, make=_random_shape)
        if pre is not None:
            x = pre(g, x)
        g.emit(op, [x.name], bound(x.bound), **(attrs(g) if attrs else {}))
    return build


def _abs(g: GraphBuilder, x: Val) -> Val:
    """|x| (guards Sqrt, Log and fractional Pow)."""
    return g.emit("Abs", [x.name], x.bound)[0]


def _abs_plus_one(g: GraphBuilder, x: Val) -> Val:
    """|x| + 1 (guards Log away from zero)."""
    a = _abs(g, x)
    return g.emit("Add", [a.name, g.const(np.float32(1.0)).name], a.bound + 1)[0]


def _binary(op: str, combine: Callable[[float, float], float],
            dtypes: Sequence[int] = NUMERIC) -> Callable[[GraphBuilder], None]:
    """A builder for a broadcasting binary op; either operand order."""
    def build(g: GraphBuilder) -> None:
        x = g.pick(dtypes, make=_random_shape)
        y = g.operand(x.shape, x.dtype)
        a, b = (x, y) if g.chance(0.7) else (y, x)
        g.emit(op, [a.name, b.name], combine(a.bound, b.bound))
    return build


def _variadic(op: str, combine: Callable[[list[float]], float],
              dtypes: Sequence[int] = NUMERIC) -> Callable[[GraphBuilder], None]:
    """A builder for Max/Min/Sum/Mean with one to three broadcasting operands."""
    def build(g: GraphBuilder) -> None:
        x = g.pick(dtypes, make=_random_shape)
        args = [x] + [g.operand(x.shape, x.dtype) for _ in range(int(g.choice([0, 1, 1, 1, 2])))]
        try:
            np.broadcast_shapes(*[a.shape for a in args])
        except ValueError as e:
            raise Skip("operands do not broadcast together") from e
        order = list(g.rng.permutation(len(args)))
        g.emit(op, [args[i].name for i in order], combine([a.bound for a in args]))
    return build


def _div(g: GraphBuilder) -> None:
    """Div with a denominator kept away from zero: a constant in +-[0.5, 2] or |y| + 0.5."""
    x = g.pick((F,), make=_random_shape)
    if g.chance(0.5):
        shape = g.broadcast_shape(x.shape)
        mag = g.rng.uniform(0.5, 2.0, shape).astype(np.float32)
        d = g.const(np.where(g.rng.random(shape) < 0.5, -mag, mag).astype(np.float32))
    else:
        y = _abs(g, g.operand(x.shape, F))
        d = g.emit("Add", [y.name, g.const(np.float32(0.5)).name], y.bound + 0.5)[0]
    g.emit("Div", [x.name, d.name], x.bound / 0.5)


def _pow(g: GraphBuilder) -> None:
    """Pow with small exponents: integer ones for any base, fractional ones for |base|."""
    x = g.pick((F,), limit=4.0, make=_random_shape)
    exps = [2.0, 3.0, 1.0]
    if g.chance(0.5):
        x, exps = _abs(g, x), [0.5, 1.5, 2.0, 3.0]
    shape = () if g.chance(0.6) else x.shape[-1:]
    e = g.const(np.array(g.rng.choice(exps, shape), np.float32))
    g.emit("Pow", [x.name, e.name], max(x.bound, 1.0) ** 3)


def _prelu(g: GraphBuilder) -> None:
    """PRelu with a slope unidirectionally broadcastable to x."""
    x = g.pick((F,), make=_random_shape)
    shape = tuple(1 if g.chance(0.4) else d for d in x.shape[len(x.shape) - int(g.rng.integers(0, x.rank + 1)):])
    slope = g.const(g.rng.uniform(0.0, 0.5, shape).astype(np.float32))
    g.emit("PRelu", [x.name, slope.name], x.bound)


def _clip(g: GraphBuilder) -> None:
    """Clip with both, one or no bounds (empty input names for the missing ones)."""
    x = g.pick((F,), make=_random_shape)
    lo = g.const(np.float32(g.rng.uniform(-3, 0))).name if g.chance(0.7) else ""
    hi = g.const(np.float32(g.rng.uniform(0.1, 3))).name if g.chance(0.7) else ""
    args = [x.name, lo, hi] if hi else [x.name, lo] if lo else [x.name]
    g.emit("Clip", args, x.bound)


def _compare(g: GraphBuilder) -> Val:
    """A bool value: float order comparison with a threshold or another value, or int/bool Equal."""
    if g.chance(0.8):
        op = g.choice(["Greater", "Less", "GreaterOrEqual", "LessOrEqual"])
        x = g.pick((F,), make=_random_shape)
        y = g.operand(x.shape, F) if g.chance(0.5) else g.const(np.float32(g.rng.uniform(-1, 1)))
        return g.emit(op, [x.name, y.name], 1.0)[0]
    x = g.pick((I64, BOOL), make=_random_shape)
    y = g.operand(x.shape, x.dtype)
    return g.emit("Equal", [x.name, y.name], 1.0)[0]


def _where(g: GraphBuilder) -> None:
    """Where(cond, a, b) with a fresh comparison or a pool bool as cond."""
    bools = [v for v in g.pool if v.dtype == BOOL]
    cond = g.choice(bools) if bools and g.chance(0.4) else _compare(g)
    dtype = I64 if g.chance(0.15) and any(v.dtype == I64 for v in g.pool) else F
    a = g.operand(cond.shape, dtype)
    b = g.operand(np.broadcast_shapes(cond.shape, a.shape), dtype)
    g.emit("Where", [cond.name, a.name, b.name], max(a.bound, b.bound))


def _logic(g: GraphBuilder) -> None:
    """And/Or/Xor/Not over bool values."""
    x = g.pick((BOOL,))
    op = g.choice(["And", "Or", "Xor", "Not"])
    if op == "Not":
        g.emit(op, [x.name], 1.0)
    else:
        g.emit(op, [x.name, g.operand(x.shape, BOOL).name], 1.0)


def _cast(g: GraphBuilder) -> None:
    """Cast int64/bool values to float (float to int would be discontinuous at every integer)."""
    x = g.pick((I64, BOOL))
    g.emit("Cast", [x.name], x.bound, to=F)


# ---------------------------------------------------------------------------------------------------------------
# Data movement builders

def _data(g: GraphBuilder, pred: Callable[[Val], bool] | None = None) -> Val:
    """An operand of any element type for data movement (no squashing: values are only moved)."""
    return g.pick(ANY, pred, limit=math.inf, make=_random_shape)


def _factorize(g: GraphBuilder, n: int, rank: int) -> list[int]:
    """`rank` positive ints whose product is n."""
    dims = []
    for _ in range(rank - 1):
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        d = g.choice(divisors)
        dims.append(d)
        n //= d
    return dims + [n]


def _reshape(g: GraphBuilder) -> None:
    """Reshape to a random factorization, sometimes with -1 or 0 (copy) entries."""
    x = _data(g)
    dims = _factorize(g, x.numel, int(g.rng.integers(1, 5)))
    if g.chance(0.3):
        dims[int(g.rng.integers(len(dims)))] = -1
    elif g.chance(0.3):
        same = [i for i, d in enumerate(dims) if i < x.rank and x.shape[i] == d]
        if same:
            dims[g.choice(same)] = 0
    g.emit("Reshape", [x.name, g.ints(dims)], x.bound)


def _transpose(g: GraphBuilder) -> None:
    """Transpose by a random permutation, or without perm (reversed axes)."""
    x = _data(g, lambda v: v.rank >= 1)
    attrs = {} if g.chance(0.2) else {"perm": [int(p) for p in g.rng.permutation(x.rank)]}
    g.emit("Transpose", [x.name], x.bound, **attrs)


def _squeeze(g: GraphBuilder) -> None:
    """Squeeze some size-1 axes (negative axes sometimes), or all of them without an axes input."""
    x = _data(g, lambda v: 1 in v.shape)
    ones = [i for i, d in enumerate(x.shape) if d == 1]
    if g.chance(0.2):
        g.emit("Squeeze", [x.name], x.bound)
        return
    axes = sorted(g.rng.choice(ones, int(g.rng.integers(1, len(ones) + 1)), replace=False).tolist())
    axes = [a - x.rank if g.chance(0.3) else a for a in axes]
    g.emit("Squeeze", [x.name, g.ints(axes)], x.bound)


def _unsqueeze(g: GraphBuilder) -> None:
    """Unsqueeze one or more new axes, up to rank 4."""
    x = _data(g, lambda v: v.rank < 4)
    k = int(g.rng.integers(1, 5 - x.rank))
    out_rank = x.rank + k
    axes = g.rng.choice(out_rank, k, replace=False).tolist()
    axes = [a - out_rank if g.chance(0.3) else a for a in axes]
    g.emit("Unsqueeze", [x.name, g.ints(axes)], x.bound)


def _flatten(g: GraphBuilder) -> None:
    """Flatten at any axis in [-rank, rank]."""
    x = _data(g, lambda v: v.rank >= 1)
    g.emit("Flatten", [x.name], x.bound, axis=int(g.rng.integers(-x.rank, x.rank + 1)))


def _concat(g: GraphBuilder) -> None:
    """Concat of two or three values that agree except on the axis (pool values, constants, new inputs, x)."""
    x = _data(g, lambda v: v.rank >= 1)
    axis = int(g.rng.integers(x.rank))
    parts = [x]
    for _ in range(int(g.rng.integers(1, 3))):
        fits = [v for v in g.pool if v.dtype == x.dtype and v.rank == x.rank
                and all(a == b for i, (a, b) in enumerate(zip(v.shape, x.shape)) if i != axis)]
        if fits and g.chance(0.5):
            parts.append(g.choice(fits))
            continue
        shape = list(x.shape)
        shape[axis] = int(g.rng.integers(1, 5))
        parts.append(g.const(g.random_array(shape, x.dtype), pool=True) if g.chance(0.6) or x.dtype == BOOL
                     else g.add_input(shape, x.dtype))
    order = g.rng.permutation(len(parts))
    g.emit("Concat", [parts[i].name for i in order], max(p.bound for p in parts),
           axis=axis - x.rank if g.chance(0.3) else axis)


def _slice_bounds(g: GraphBuilder, d: int, step: int) -> tuple[int, int]:
    """A non-empty [start, end) for one axis, written as in-range, negative, out-of-range or extreme ints."""
    if step > 0:
        start = int(g.rng.integers(0, d))
        end = int(g.rng.integers(start + 1, d + 1))
        big = g.choice([d, d + 3, INT64_MAX])
    else:
        start = int(g.rng.integers(0, d))
        end = int(g.rng.integers(-1, start))
        big = g.choice([d, d + 3, INT64_MAX])
    start_code = g.choice([start, start - d]) if not (step < 0 and start == d - 1 and g.chance(0.3)) else big
    if end == d:
        end_code = big
    elif end == -1:
        end_code = g.choice([-d - 1, -d - 5, INT64_MIN])
    else:
        end_code = g.choice([end, end - d])
    return int(start_code), int(end_code)


def _slice(g: GraphBuilder) -> None:
    """Slice some axes with in-range, out-of-range, negative and extreme starts/ends and +-1/2 steps."""
    x = _data(g, lambda v: v.rank >= 1)
    axes = sorted(g.rng.choice(x.rank, int(g.rng.integers(1, x.rank + 1)), replace=False).tolist())
    starts, ends, steps = [], [], []
    for a in axes:
        step = int(g.choice([1, 1, 1, 2, -1, -2]))
        start, end = _slice_bounds(g, x.shape[a], step)
        starts.append(start)
        ends.append(end)
        steps.append(step)
    args = [x.name, g.ints(starts), g.ints(ends)]
    if axes != list(range(x.rank)) or g.chance(0.5) or any(s != 1 for s in steps):
        args.append(g.ints([a - x.rank if g.chance(0.3) else a for a in axes]))
        if any(s != 1 for s in steps) or g.chance(0.3):
            args.append(g.ints(steps))
    g.emit("Slice", args, x.bound)


def _split(g: GraphBuilder) -> None:
    """Split along an axis by explicit sizes or by num_outputs (uneven last chunk allowed)."""
    x = _data(g, lambda v: v.rank >= 1 and max(v.shape) >= 2)
    axis = g.choice([i for i, d in enumerate(x.shape) if d >= 2])
    d = x.shape[axis]
    if g.chance(0.5):
        n = int(g.rng.integers(2, min(d, 4) + 1))
        cuts = sorted(g.rng.choice(np.arange(1, d), n - 1, replace=False).tolist())
        sizes = np.diff([0] + cuts + [d]).tolist()
        g.emit("Split", [x.name, g.ints(sizes)], x.bound, n_out=n, axis=axis)
        return
    n = int(g.rng.integers(2, min(d, 4) + 1))
    chunk = -(-d // n)
    if d - chunk * (n - 1) <= 0:
        raise Skip("uneven split leaves an empty chunk")
    g.emit("Split", [x.name], x.bound, n_out=n, axis=axis - x.rank if g.chance(0.3) else axis, num_outputs=n)


def _gather(g: GraphBuilder) -> None:
    """Gather with constant indices (negative ones included) of rank 0 to 2."""
    x = _data(g, lambda v: v.rank >= 1)
    axis = int(g.rng.integers(x.rank))
    d = x.shape[axis]
    index_rank = int(g.rng.integers(0, min(2, MAX_RANK - x.rank + 1) + 1))
    shape = tuple(int(g.rng.integers(1, 4)) for _ in range(index_rank))
    indices = g.const(g.rng.integers(-d, d, shape).astype(np.int64))
    g.emit("Gather", [x.name, indices.name], x.bound, axis=axis - x.rank if g.chance(0.3) else axis)


def _expand(g: GraphBuilder) -> None:
    """Expand to a shape that stretches ones, keeps or leaves ones, and may add leading dims."""
    x = _data(g)
    target = [int(g.rng.integers(1, 5)) if d == 1 and g.chance(0.6) else (1 if g.chance(0.2) else d)
              for d in x.shape]
    if x.rank < 4 and g.chance(0.3):
        target.insert(0, int(g.rng.integers(1, 4)))
    g.emit("Expand", [x.name, g.ints(target)], x.bound)


def _pad(g: GraphBuilder) -> None:
    """Pad in constant (negative pads crop), reflect, edge or wrap mode, sometimes on chosen axes only."""
    x = _data(g, lambda v: v.rank >= 1)
    mode = g.choice(["constant", "constant", "reflect", "edge", "wrap"])
    axes = list(range(x.rank))
    if g.chance(0.3):
        axes = sorted(g.rng.choice(x.rank, int(g.rng.integers(1, x.rank + 1)), replace=False).tolist())
    begins, ends = [], []
    for a in axes:
        d = x.shape[a]
        top = min(2, d - 1) if mode == "reflect" else min(2, d) if mode == "wrap" else 2
        low = -1 if mode == "constant" and d >= 3 else 0
        begins.append(int(g.rng.integers(low, top + 1)))
        ends.append(int(g.rng.integers(low, top + 1)))
    args = [x.name, g.ints(begins + ends)]
    value = 0.0
    if mode == "constant" and x.dtype != BOOL and g.chance(0.6):
        value = float(g.rng.uniform(-1, 1)) if x.dtype == F else int(g.rng.integers(-3, 4))
        args.append(g.const(np.array(value, NP_TYPES[x.dtype])).name)
    if len(axes) != x.rank or g.chance(0.2):
        if len(args) == 2:
            args.append("")
        args.append(g.ints(axes))
    g.emit("Pad", args, max(x.bound, abs(value)), mode=mode)


def _tile(g: GraphBuilder) -> None:
    """Tile by small repeats along some axes."""
    x = _data(g, lambda v: v.rank >= 1)
    repeats = [int(g.rng.integers(1, 4)) if g.chance(0.4) else 1 for _ in x.shape]
    g.emit("Tile", [x.name, g.ints(repeats)], x.bound)


def _depth_space(g: GraphBuilder) -> None:
    """DepthToSpace (DCR or CRD) or SpaceToDepth with block size 2."""
    if g.chance(0.5):
        x = g.pick((F,), lambda v: v.rank == 4 and v.shape[1] % 4 == 0, limit=math.inf)
        g.emit("DepthToSpace", [x.name], x.bound, blocksize=2, mode=g.choice(["DCR", "CRD"]))
    else:
        x = g.pick((F,), lambda v: v.rank == 4 and v.shape[2] % 2 == 0 and v.shape[3] % 2 == 0, limit=math.inf)
        g.emit("SpaceToDepth", [x.name], x.bound, blocksize=2)


def _identity(g: GraphBuilder) -> None:
    """Identity or inference-mode Dropout (both must vanish without changing values)."""
    x = _data(g)
    g.emit(g.choice(["Identity", "Dropout"]), [x.name], x.bound)


# ---------------------------------------------------------------------------------------------------------------
# Many-to-Many builders

def _matmul(g: GraphBuilder) -> None:
    """MatMul with x on either side; the other operand a pool value, constant or input; 1-D and batched."""
    x = g.pick((F,), lambda v: v.rank >= 1, make=_random_shape)
    n = int(g.rng.integers(1, 9))
    if x.rank >= 2 and g.chance(0.25):
        k = x.shape[-2]
        shape = (int(g.rng.integers(1, 9)), k)
        a = g.const(g.random_array(shape, F, -1, 1)) if g.chance(0.7) else g.add_input(shape)
        g.emit("MatMul", [a.name, x.name], k * a.bound * x.bound)
        return
    k = x.shape[-1]
    fits = [v for v in g.pool if v.dtype == F and (v.rank == 1 and v.shape[0] == k or v.rank >= 2 and v.shape[-2] == k)]
    if fits and g.chance(0.3):
        b = g.tame(g.choice(fits))
    else:
        batch = tuple(1 if g.chance(0.5) else d for d in x.shape[:-2]) if x.rank > 2 and g.chance(0.4) else ()
        shape = (k,) if g.chance(0.15) else batch + (k, n)
        b = g.const(g.random_array(shape, F, -1, 1)) if g.chance(0.7) else g.add_input(shape)
    g.emit("MatMul", [x.name, b.name], k * b.bound * x.bound)


def _gemm(g: GraphBuilder) -> None:
    """Gemm on a 2-D value with transA/transB, alpha, beta and a broadcast C."""
    x = g.pick((F,), lambda v: v.rank == 2, make=lambda g: _random_shape(g, 2))
    trans_a = int(g.chance(0.3))
    m, k = (x.shape[1], x.shape[0]) if trans_a else x.shape
    n = int(g.rng.integers(1, 9))
    trans_b = int(g.chance(0.4))
    b = g.const(g.random_array((n, k) if trans_b else (k, n), F, -1, 1))
    alpha, beta = float(g.choice([1.0, 0.5, 2.0])), float(g.choice([1.0, 0.5, -1.0]))
    args = [x.name, b.name]
    bound = abs(alpha) * k * x.bound
    if g.chance(0.7):
        c = g.const(g.random_array(g.choice([(), (n,), (1, n), (m, 1), (m, n)]), F, -1, 1))
        args.append(c.name)
        bound += abs(beta)
    g.emit("Gemm", args, bound, transA=trans_a, transB=trans_b, alpha=alpha, beta=beta)


def _conv_pads(g: GraphBuilder, kernel: Sequence[int]) -> dict:
    """auto_pad or explicit pads smaller than the kernel."""
    if g.chance(0.2):
        return {"auto_pad": g.choice(["SAME_UPPER", "SAME_LOWER", "VALID"])}
    begins = [int(g.rng.integers(0, k)) for k in kernel]
    ends = [int(g.rng.integers(0, k)) for k in kernel]
    return {"pads": begins + ends} if any(begins + ends) or g.chance(0.5) else {}


def _conv(g: GraphBuilder) -> None:
    """A small Conv (1-D or 2-D), grouped or depthwise sometimes, strides, dilations, pads, bias."""
    x = g.pick((F,), lambda v: v.rank in (3, 4) and v.shape[1] <= 8, make=_spatial_shape)
    c = x.shape[1]
    group = 1 if g.chance(0.6) else g.choice([d for d in range(1, c + 1) if c % d == 0])
    m = group * int(g.rng.integers(1, 4))
    spatial = x.shape[2:]
    kernel = [int(g.rng.integers(1, min(3, s) + 1)) for s in spatial]
    dilations = [2 if g.chance(0.2) and 2 * (k - 1) + 1 <= s else 1 for k, s in zip(kernel, spatial)]
    attrs = {"kernel_shape": kernel, "group": group, **_conv_pads(g, kernel)}
    if g.chance(0.4):
        attrs["strides"] = [int(g.rng.integers(1, 3)) for _ in kernel]
    if any(d != 1 for d in dilations) and "auto_pad" not in attrs:
        attrs["dilations"] = dilations
    w = g.const(g.random_array((m, c // group, *kernel), F, -0.5, 0.5))
    args = [x.name, w.name]
    if g.chance(0.6):
        args.append(g.const(g.random_array((m,), F, -1, 1)).name)
    g.emit("Conv", args, (c // group) * int(np.prod(kernel)) * 0.5 * x.bound + 1, **attrs)


def _pool(g: GraphBuilder) -> None:
    """MaxPool/AveragePool with kernels, strides, pads, ceil_mode, count_include_pad, dilations."""
    x = g.pick((F,), lambda v: v.rank in (3, 4), make=_spatial_shape)
    op = g.choice(["MaxPool", "AveragePool"])
    spatial = x.shape[2:]
    kernel = [int(g.rng.integers(1, min(3, s) + 1)) for s in spatial]
    attrs = {"kernel_shape": kernel, **_conv_pads(g, kernel)}
    if g.chance(0.5):
        attrs["strides"] = [int(g.rng.integers(1, 3)) for _ in kernel]
    if g.chance(0.3):
        attrs["ceil_mode"] = 1
    if op == "AveragePool" and g.chance(0.4):
        attrs["count_include_pad"] = 1
    if op == "MaxPool" and g.chance(0.2):
        attrs["dilations"] = [2 if 2 * (k - 1) + 1 <= s else 1 for k, s in zip(kernel, spatial)]
    g.emit(op, [x.name], x.bound, **attrs)


def _global_pool(g: GraphBuilder) -> None:
    """GlobalAveragePool or GlobalMaxPool over the spatial axes."""
    x = g.pick((F,), lambda v: v.rank in (3, 4), make=_spatial_shape)
    g.emit(g.choice(["GlobalAveragePool", "GlobalMaxPool"]), [x.name], x.bound)


def _reduce(g: GraphBuilder) -> None:
    """ReduceSum/Mean/Max/Min/L2 over some, all or no-axes-given, with and without keepdims."""
    op = g.choice(["ReduceSum", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL2"])
    dtypes = NUMERIC if op in ("ReduceSum", "ReduceMax", "ReduceMin") else (F,)
    x = g.pick(dtypes, lambda v: v.rank >= 1, make=_random_shape)
    args = [x.name]
    count = x.numel
    if g.chance(0.85):
        axes = sorted(g.rng.choice(x.rank, int(g.rng.integers(1, x.rank + 1)), replace=False).tolist())
        count = int(np.prod([x.shape[a] for a in axes]))
        args.append(g.ints([a - x.rank if g.chance(0.3) else a for a in axes]))
    bound = {"ReduceSum": count * x.bound, "ReduceL2": math.sqrt(count) * x.bound}.get(op, x.bound)
    g.emit(op, args, bound, keepdims=int(g.chance(0.5)))


def _softmax(g: GraphBuilder) -> None:
    """Softmax or LogSoftmax along any axis (negative axes included)."""
    x = g.pick((F,), lambda v: v.rank >= 1, make=_random_shape)
    op = g.choice(["Softmax", "Softmax", "LogSoftmax"])
    axis = int(g.rng.integers(-x.rank, x.rank))
    g.emit(op, [x.name], 1.0 if op == "Softmax" else 2 * x.bound + math.log(x.numel + 1), axis=axis)


def _layer_norm(g: GraphBuilder) -> None:
    """LayerNormalization over a trailing block of axes, with scale and sometimes bias."""
    x = g.pick((F,), lambda v: v.rank >= 1, make=_random_shape)
    axis = int(g.rng.integers(-x.rank, x.rank))
    norm_shape = x.shape[axis:]
    args = [x.name, g.const(g.random_array(norm_shape, F, 0.5, 1.5)).name]
    if g.chance(0.6):
        args.append(g.const(g.random_array(norm_shape, F, -1, 1)).name)
    count = int(np.prod(norm_shape))
    g.emit("LayerNormalization", args, 1.5 * math.sqrt(count) + 1, axis=axis, epsilon=1e-5)


def _batch_norm(g: GraphBuilder) -> None:
    """BatchNormalization in inference mode with positive variances."""
    x = g.pick((F,), lambda v: v.rank >= 2, make=_spatial_shape)
    c = x.shape[1]
    args = [x.name] + [g.const(g.random_array((c,), F, lo, hi)).name
                       for lo, hi in ((0.5, 1.5), (-1, 1), (-1, 1), (0.5, 2.0))]
    g.emit("BatchNormalization", args, (x.bound + 1) / 0.7 * 1.5 + 1)


# ---------------------------------------------------------------------------------------------------------------
# Pattern builders: several nodes shaped like real models

RESIDUAL_OPS = ("Relu", "Tanh", "Sigmoid", "Neg", "Abs", "LeakyRelu", "Erf", "Scale")


def _residual(g: GraphBuilder) -> None:
    """A diamond: x -> 1..3 shape-preserving ops -> Add/Mul/Sub with x again."""
    x = g.pick((F,), make=_random_shape)
    y = x
    for _ in range(int(g.rng.integers(1, 4))):
        op = g.choice(RESIDUAL_OPS)
        if op == "Scale":
            y = g.emit("Mul", [y.name, g.const(np.float32(g.rng.uniform(0.2, 1.5))).name], 1.5 * y.bound)[0]
        else:
            y = g.emit(op, [y.name], y.bound if op in ("Relu", "Neg", "Abs", "LeakyRelu") else 1.0)[0]
    op = g.choice(["Add", "Add", "Mul", "Sub"])
    g.emit(op, [y.name, x.name], y.bound * x.bound if op == "Mul" else y.bound + x.bound)


def _shape_of(g: GraphBuilder) -> None:
    """Shape-driven subgraphs that folding must resolve: Reshape/Expand/ConstantOfShape of Shape(x)."""
    x = _data(g, lambda v: v.rank >= 1)
    kind = g.choice(["reshape", "expand", "constant", "partial"])
    if kind == "partial":
        end = int(g.rng.integers(1, x.rank + 1))
        s = g.emit("Shape", [x.name], INT_LIMIT, pool=False, end=end)[0]
        full = g.emit("Concat", [s.name, g.ints([-1])], INT_LIMIT, pool=False, axis=0)[0]
        g.emit("Reshape", [x.name, full.name], x.bound)
        return
    s = g.emit("Shape", [x.name], INT_LIMIT, pool=False)[0]
    if kind == "constant":
        value = numpy_helper.from_array(np.array([g.rng.uniform(-1, 1)], np.float32))
        g.emit("ConstantOfShape", [s.name], 1.0, value=value)
        return
    if kind == "reshape":
        fits = [v for v in g.pool if v.numel == x.numel and v.name != x.name and not v.const]
        y = g.choice(fits) if fits else x
    else:
        fits = [v for v in g.pool if v.rank <= x.rank and _broadcasts(v.shape, x.shape)
                and np.broadcast_shapes(v.shape, x.shape) == x.shape]
        y = g.choice(fits) if fits else x
    g.emit("Reshape" if kind == "reshape" else "Expand", [y.name, s.name], y.bound)


# ---------------------------------------------------------------------------------------------------------------
# The op table: name -> (builder, weight). Names are for coverage of builders; the report counts node op_types.

def _erf_attrs(g: GraphBuilder) -> dict:
    """Gelu's approximate attribute: exact (erf) or tanh."""
    return {"approximate": g.choice(["none", "tanh"])}


OPS: dict[str, tuple[Callable[[GraphBuilder], None], float]] = {
    "Add": (_binary("Add", lambda a, b: a + b), 3.0),
    "Sub": (_binary("Sub", lambda a, b: a + b), 2.0),
    "Mul": (_binary("Mul", lambda a, b: a * b), 3.0),
    "Div": (_div, 1.5),
    "Pow": (_pow, 1.0),
    "PRelu": (_prelu, 0.5),
    "Max": (_variadic("Max", max), 1.0),
    "Min": (_variadic("Min", max), 1.0),
    "Sum": (_variadic("Sum", sum, (F,)), 0.5),
    "Mean": (_variadic("Mean", max, (F,)), 0.5),
    "Relu": (_unary("Relu", lambda b: b), 2.0),
    "Sigmoid": (_unary("Sigmoid", lambda b: 1.0), 1.5),
    "Tanh": (_unary("Tanh", lambda b: 1.0), 1.5),
    "Exp": (_unary("Exp", math.exp, limit=4.0), 1.0),
    "Abs": (_unary("Abs", lambda b: b, dtypes=NUMERIC), 1.0),
    "Neg": (_unary("Neg", lambda b: b, dtypes=NUMERIC), 1.0),
    "Sqrt": (_unary("Sqrt", math.sqrt, pre=_abs), 1.0),
    "Log": (_unary("Log", lambda b: math.log(b + 1), pre=_abs_plus_one), 0.7),
    "Clip": (_clip, 1.0),
    "LeakyRelu": (_unary("LeakyRelu", lambda b: b, attrs=lambda g: {"alpha": float(g.choice([0.01, 0.1, 0.2]))}), 1.0),
    "Erf": (_unary("Erf", lambda b: 1.0), 0.7),
    "Gelu": (_unary("Gelu", lambda b: b, attrs=_erf_attrs), 1.0),
    "Elu": (_unary("Elu", lambda b: b), 0.4),
    "Softplus": (_unary("Softplus", lambda b: b + 1), 0.4),
    "Softsign": (_unary("Softsign", lambda b: 1.0), 0.4),
    "HardSigmoid": (_unary("HardSigmoid", lambda b: 1.0), 0.4),
    "HardSwish": (_unary("HardSwish", lambda b: b), 0.4),
    "Sin": (_unary("Sin", lambda b: 1.0), 0.3),
    "Where": (_where, 1.5),
    "Logic": (_logic, 0.5),
    "Cast": (_cast, 0.5),
    "Reshape": (_reshape, 1.5),
    "Transpose": (_transpose, 1.5),
    "Squeeze": (_squeeze, 0.7),
    "Unsqueeze": (_unsqueeze, 0.8),
    "Flatten": (_flatten, 0.6),
    "Concat": (_concat, 1.2),
    "Slice": (_slice, 1.2),
    "Split": (_split, 0.8),
    "Gather": (_gather, 1.0),
    "Expand": (_expand, 0.8),
    "Pad": (_pad, 0.8),
    "Tile": (_tile, 0.6),
    "DepthToSpace": (_depth_space, 0.3),
    "Identity": (_identity, 0.2),
    "MatMul": (_matmul, 1.5),
    "Gemm": (_gemm, 0.8),
    "Conv": (_conv, 1.0),
    "Pool": (_pool, 0.8),
    "GlobalPool": (_global_pool, 0.4),
    "Reduce": (_reduce, 1.5),
    "Softmax": (_softmax, 1.0),
    "LayerNormalization": (_layer_norm, 0.8),
    "BatchNormalization": (_batch_norm, 0.4),
    "Residual": (_residual, 1.2),
    "ShapeOf": (_shape_of, 0.6),
}


# ---------------------------------------------------------------------------------------------------------------
# Whole graphs

def _build(rng: np.random.Generator, min_nodes: int, max_nodes: int, table: dict) -> onnx.ModelProto:
    """One attempt: inputs, random builders until the node target, then outputs (leaves and some more)."""
    g = GraphBuilder(rng)
    for _ in range(int(rng.integers(1, 4))):
        r = rng.random()
        g.add_input(_random_shape(g), F if r < 0.85 else I64 if r < 0.95 else BOOL)
    names = list(table)
    weights = np.array([table[n][1] for n in names], float)
    target = int(rng.integers(min_nodes, max_nodes + 1))
    for _ in range(target * 8):
        if len(g.nodes) >= target:
            break
        builder = table[names[int(rng.choice(len(names), p=weights / weights.sum()))]][0]
        try:
            builder(g)
        except Skip:
            continue
    if not g.nodes:
        raise Skip("no node could be built")
    return _finish(g)


def _finish(g: GraphBuilder) -> onnx.ModelProto:
    """Graph outputs: every unconsumed node output, some intermediates, sometimes a graph input."""
    consumed = {i for n in g.nodes for i in n.input}
    produced = {o for n in g.nodes for o in n.output}
    made = [v for v in g.pool if v.name in produced]
    outputs = [v for v in made if v.name not in consumed]
    outputs += [v for v in made if v.name in consumed and g.chance(0.15)]
    if g.chance(0.15):
        outputs.append(g.choice(g.inputs))
    used = {i for n in g.nodes for i in n.input} | {v.name for v in outputs}
    inputs = [v for v in g.inputs if v.name in used]
    inits = [t for name, t in g.inits.items() if name in used]
    graph = helper.make_graph(g.nodes, "fuzz", [_vi(v) for v in inputs], [_vi(v) for v in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                             producer_name="dnnfusion.fuzz")


def generate(seed: int, min_nodes: int = 3, max_nodes: int = 14, ops: Sequence[str] | None = None) -> FuzzGraph:
    """A valid model (checked with full_check) for `seed`; the same seed always gives the same bytes.
    `ops` restricts the builders to those names of `OPS`."""
    table = {k: v for k, v in OPS.items() if ops is None or k in ops}
    for attempt in range(200):
        rng = np.random.default_rng([seed, attempt])
        try:
            model = _build(rng, min_nodes, max_nodes, table)
            onnx.checker.check_model(model, full_check=True)
        except (Skip, onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
            continue
        shapes = {vi.name: tuple(d.dim_value for d in vi.type.tensor_type.shape.dim) for vi in model.graph.input}
        return FuzzGraph(seed, model, shapes, [n.op_type for n in model.graph.node])
    raise RuntimeError(f"no valid graph for seed {seed} after 200 attempts")


def input_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The static shapes of a model's graph inputs (initializers listed as inputs excluded)."""
    inits = {t.name for t in model.graph.initializer}
    return {vi.name: tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
            for vi in model.graph.input if vi.name not in inits}


def make_feeds(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    """Seeded feeds in the ranges the generator assumes; each input's data depends only on its name,
    type and shape, so a shrunk model keeps the feeds of the inputs it kept."""
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        t = vi.type.tensor_type
        shape = tuple(d.dim_value for d in t.shape.dim)
        rng = np.random.default_rng([seed, zlib.crc32(vi.name.encode())])
        if t.elem_type == I64:
            feeds[vi.name] = rng.integers(-INT_FEED_BOUND, INT_FEED_BOUND + 1, shape).astype(np.int64)
        elif t.elem_type == BOOL:
            feeds[vi.name] = rng.random(shape) < 0.5
        else:
            dtype = helper.tensor_dtype_to_np_dtype(t.elem_type)
            feeds[vi.name] = rng.uniform(-FEED_BOUND, FEED_BOUND, shape).astype(dtype)
    return feeds


def op_coverage(graphs: Iterable[FuzzGraph]) -> Counter:
    """How many graphs used each op type."""
    counts: Counter = Counter()
    for fg in graphs:
        counts.update(fg.ops)
    return counts
