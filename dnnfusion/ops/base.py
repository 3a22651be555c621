"""What an operator definition holds, and the shared base classes that most operators are made of.

An `Op` knows, for one ONNX operator: its mapping type (DESIGN §2.1), its algebraic properties, its static
shape rule (`infer`), its numpy reference semantics (`compute`) and its FLOP count. Passes and executors
ask the op; nothing outside `ops/` switches on operator names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple, Sequence

import numpy as np

from ..errors import InvalidModelError, ShapeError, UnsupportedOperatorError
from ..ir.graph import Graph, Node, Value

from ..kir.expr import Expr, Index, Load, Var, broadcast_index, ctype, linear
from ..kir.kernel import KernelContext, KernelOptions, Reader


class MappingType(enum.Enum):
    """How output elements map to input elements (the paper's Table 2), in order of complexity."""

    ONE_TO_ONE = "One-to-One"
    REORGANIZE = "Reorganize"
    SHUFFLE = "Shuffle"
    ONE_TO_MANY = "One-to-Many"
    MANY_TO_MANY = "Many-to-Many"


class PickedRows(NamedTuple):
    """A node to make (`Op.picked_rows`): its operator, domain, inputs and attributes."""

    op_type: str
    domain: str
    inputs: list[Value]
    attrs: dict[str, Any]


@dataclass(frozen=True)
class Algebra:
    """Which algebraic properties hold; `distributes_over` names the ops this one distributes over."""

    associative: bool = False
    commutative: bool = False
    distributes_over: frozenset[str] = frozenset()

    def describe(self) -> str:
        parts = [p for p, on in (("associative", self.associative), ("commutative", self.commutative)) if on]
        if self.distributes_over:
            parts.append("distributive over " + ", ".join(sorted(self.distributes_over)))
        return "; ".join(parts)


class TensorType(NamedTuple):
    """A static tensor type: what a shape rule returns for an output it cannot compute outright."""

    dtype: np.dtype
    shape: tuple


Inferred = TensorType | np.ndarray  # a shape rule may return a known constant instead of a type


class ChannelAffine(NamedTuple):
    """What a node computes when it is `y = x * scale + shift` with constants (BatchNormalization at
    inference, a multiply or add by a constant): the structural rewrite folds it into the weights of the
    producer of x when scale and shift vary along that producer's output channels only (DESIGN §2.4)."""

    input: int          # which input is x (it has y's shape)
    scale: np.ndarray   # float64, y's rank, broadcasts to y
    shift: np.ndarray   # float64, y's rank, broadcasts to y


class Op:
    """One ONNX operator. Subclasses set the class attributes and override infer/compute."""

    op_type: ClassVar[str] = ""
    domain: ClassVar[str] = ""
    mapping: ClassVar[MappingType] = MappingType.MANY_TO_MANY
    algebra: ClassVar[Algebra] = Algebra()
    deterministic: ClassVar[bool] = True   # False: never folded at compile time (random ops)
    elementwise: ClassVar[bool] = False    # inputs broadcast to the output (the broadcast rule of input_mapping)
    reduction: ClassVar[bool] = False      # a Many-to-Many that reduces axes (O1 fuses elementwise producers in)
    dense: ClassVar[bool] = False          # GEMM or convolution work (benchmarks report its time apart)
    summary: ClassVar[str] = ""

    def input_mapping(self, node: Node, i: int) -> MappingType:
        """The mapping type with respect to input `i`: an elementwise operator reads an input that broadcasts
        (fewer elements than the output) One-to-Many (DESIGN §2.1)."""
        value, out = node.inputs[i], node.outputs[0]
        if self.elementwise and value is not None and value.is_static and out.is_static and value.numel < out.numel:
            return MappingType.ONE_TO_MANY
        return self.mapping

    def can_fuse(self, node: Node) -> bool:
        """Whether this node may share a block with others: deterministic, and every output extent known at
        compile time (NonZero, NonMaxSuppression, Unique... run as blocks of their own). The ECG adds the
        other condition, generated code (`lowering`), which it asks once per node."""
        return self.deterministic and all(v.is_static for v in node.outputs if v is not None)

    def input_reuse(self, node: Node, i: int) -> float:
        """How many times, on average, the kernel template evaluates each element of input i: a producer fused
        into its prologue is recomputed that often (a convolution's im2col reads each pixel once per kernel tap
        that covers it). 1 for pointwise code and for templates that pack an operand once."""
        return 1.0

    # --- structural rewriting (DESIGN §2.4): per-channel affine maps folded into weights ----------------
    def channel_affine(self, node: Node) -> ChannelAffine | None:
        """This node as `y = x * scale + shift` per channel of one axis, all constant; None if it is not."""
        return None

    def absorb_channel_affine(self, node: Node, scale: np.ndarray, shift: np.ndarray) -> dict[int, np.ndarray] | None:
        """New constant inputs (by position) that make this node's first output come out as `y * scale + shift`
        (arrays of y's rank): a linear op rescales its weights and bias. None if it cannot (weights not
        constant, or scale/shift vary along an axis other than the output channels)."""
        return None

    # --- rows picked before they are computed (passes/structural.py's `pick_rows_first`) ------------------
    def row_picks(self, node: Node) -> int | None:
        """For an operator whose output is rows (axis 0) of input 0 picked by a 1-D index input: that input's
        position. None otherwise."""
        return None

    def stacks_rows(self, node: Node) -> bool:
        """Whether output 0 is the inputs' rows one after another (a Concat along axis 0)."""
        return False

    def picked_rows(self, nodes: list[Node], picks: Value) -> PickedRows | None:
        """For nodes of this operator whose outputs are stacked by rows: the node (operator, domain, inputs,
        attributes) that computes only the stacked rows `picks` selects. None: they cannot be computed apart."""
        return None

    # --- data-dependent extents padded to a static bound (passes/padded.py) -----------------------------
    def padded(self, node: Node) -> tuple[str, str] | None:
        """For an operator whose output 0 has a data-dependent extent along axis 0: (op_type, domain) of a
        registered variant, same inputs and attributes, whose outputs are that result padded with zero rows to
        a static bound, and the number of valid rows (an int64 scalar). None: no such variant."""
        return None

    def onnx_body(self, node: Node) -> "list[Any] | None":
        """For an operator the compiler makes for itself (not in ONNX): onnx NodeProtos of standard operators
        that compute it from the node's input names into its output names, so that a graph holding it can be
        written as ONNX and run by other runtimes. None for ONNX's own operators."""
        return None

    def padded_rows(self, node: Node, padded: dict[int, int]) -> int | None:
        """When inputs `padded` (position -> axis) hold valid rows along that axis only up to a run-time count,
        the rest padding: the axis of output 0 whose rows correspond, such that rows past the count depend on
        padding only. None if padding could reach valid results. Elementwise operators keep the axis as long as
        every other operand broadcasts along it."""
        out = node.outputs[0]
        if not self.elementwise or len(node.outputs) != 1 or out.shape is None:
            return None
        rank = len(out.shape)
        axes = {axis + rank - len(node.inputs[i].shape) for i, axis in padded.items()}
        if len(axes) != 1:
            return None
        axis = axes.pop()
        for i, v in enumerate(node.inputs):
            k = axis - (rank - len(v.shape)) if v is not None and i not in padded else -1
            if k >= 0 and v.shape[k] != 1:
                return None
        return axis

    def padding_sink(self, node: Node, padded: dict[int, int]) -> "Callable[[Graph, Value], None] | None":
        """For an operator whose result stays valid when the padding rows of inputs `padded` are ignored (a
        scatter of padded updates into static data): the graph edit that makes it ignore rows at or past the
        count (a Value given to the edit). None: it cannot."""
        return None

    # --- code generation (DESIGN §2.6): how the operator describes itself to codegen ---------------------
    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr | None:
        """Output `out` at multi-index `index` as a scalar expression over inputs read through
        `read(i, index_of_input_i)` (One-to-One, One-to-Many, Reorganize and Shuffle operators: the index maps
        compose, so data movement inside a block becomes index arithmetic). None: not expressible so."""
        return None

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """C statements computing every output (Many-to-Many templates): inputs are read through `ctx.read`
        (the prologue: fused producers inline there) and results written through `ctx.store` (the epilogue).
        None: no template for this node."""
        return None

    def blocked_channels(self, node: Node, block: int) -> str:
        """How fast this node's kernel template works on channel-blocked arrays ([N][C / block][*spatial][block]):
        "any" reads and writes them fast whatever the other side's layout, "input" writes a blocked result fast
        only from a blocked input 0, "" not at all. codegen/layouts.py holds a value so only between such
        kernels; every template is correct on any layout (reads and stores go through the index maps)."""
        return ""

    def kernel_choices(self, node: Node, options: KernelOptions) -> list[tuple[str, float]]:
        """The methods `kernel` chooses between for this node under `options`, each with its estimated cycles,
        the chosen one first; empty where the template has one method only."""
        return []

    def lowering(self, node: Node) -> str | None:
        """'pointwise' or 'kernel' if this node has generated code, None if it runs as a fallback. Decided by
        asking the description itself on symbolic inputs, so an attribute it declines (by returning None, or
        by failing) makes the node a counted fallback instead of a failed compile."""
        if not _codegen_dtypes(node):
            return None
        return probe(self, node)

    def infer(self, node: Node) -> list[Inferred]:
        """The static type of each output, from input types/shapes and any constant inputs."""
        raise NotImplementedError

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        """Reference semantics in numpy: the outputs for these input arrays."""
        raise NotImplementedError

    def flops(self, node: Node) -> int:
        """Floating-point operations per run; elementwise default: one per output element."""
        return sum(v.numel for v in node.outputs if v is not None)

    # --- helpers for shape rules -------------------------------------------------------------------
    def fail(self, node: Node, detail: str) -> UnsupportedOperatorError:
        """An error naming this node for a feature we do not support."""
        return UnsupportedOperatorError(node.op_type, node.name, node.domain, node.opset, detail)

    @staticmethod
    def invalid(node: Node, detail: str) -> InvalidModelError:
        return InvalidModelError(f"{node.op_type} node '{node.name}': {detail}")


def channel_vector(a: np.ndarray, axis: int, n: int) -> np.ndarray | None:
    """`a` (broadcastable to a tensor whose `axis` has extent n) as an [n] vector, if it varies along `axis`
    only; None if it varies along another axis or cannot broadcast."""
    if a.ndim <= axis or any(d != 1 for k, d in enumerate(a.shape) if k != axis) or a.shape[axis] not in (1, n):
        return None
    return np.broadcast_to(a.reshape(-1), (n,))


def const_input(node: Node, i: int, what: str) -> np.ndarray | None:
    """The compile-time value of input i (None when omitted); an error if it is not constant."""
    v = node.input(i)
    if v is None:
        return None
    if v.const is None:
        raise ShapeError(
            f"{node.op_type} node '{node.name}': its {what} ('{v.name}') must be known at compile time "
            "for static shapes, but it depends on a graph input")
    return v.const


def shape_of(node: Node, i: int) -> tuple:
    v = node.input(i)
    if v is None or v.shape is None:
        raise ShapeError(f"{node.op_type} node '{node.name}': input {i} has no inferred shape")
    return v.shape


def broadcast(node: Node, *shapes: tuple) -> tuple:
    """Multidirectional (numpy) broadcasting of static shapes; data-dependent extents stay None."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
        dims.discard(1)
        if len(dims - {None}) > 1:
            raise ShapeError(f"{node.op_type} node '{node.name}': shapes {', '.join(map(str, shapes))} do not broadcast")
        out.append(next(iter(dims - {None}), None if None in dims else 1))
    return tuple(out)


def same_as_input(node: Node, i: int = 0, dtype: Any = None) -> TensorType:
    v = node.inputs[i]
    return TensorType(np.dtype(dtype) if dtype is not None else v.dtype, v.shape)


def normalize_axis(node: Node, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise InvalidModelError(f"{node.op_type} node '{node.name}': axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def input_values(node: Node) -> list[Value]:
    return [v for v in node.inputs if v is not None]


# --- families ------------------------------------------------------------------------------------

class Unary(Op):
    """y = f(x) elementwise, same shape; `out_dtype` fixes the output type (e.g. bool for IsNaN)."""

    mapping = MappingType.ONE_TO_ONE
    elementwise = True
    out_dtype: ClassVar[Any] = None

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def expr(self, node: Node, x: Expr) -> Expr | None:
        """The scalar formula of `fn` for codegen (x has the input's C type); None: no generated code."""
        return None

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr | None:
        return self.expr(node, read(0, index))

    def infer(self, node: Node) -> list[Inferred]:
        return [same_as_input(node, 0, self.out_dtype)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        y = np.asarray(self.fn(node, x))
        return [y.astype(self.out_dtype if self.out_dtype is not None else x.dtype, copy=False)]


class Binary(Op):
    """y = f(a, b) elementwise with numpy broadcasting; `out_dtype` fixes the type (bool for compares)."""

    mapping = MappingType.ONE_TO_ONE
    elementwise = True
    out_dtype: ClassVar[Any] = None

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr | None:
        """The scalar formula of `fn` for codegen; None: no generated code."""
        return None

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr | None:
        shape = node.outputs[0].shape
        a, b = (read(i, broadcast_index(index, shape, node.inputs[i].shape)) for i in (0, 1))
        return self.expr(node, a, b)

    def infer(self, node: Node) -> list[Inferred]:
        a, b = node.inputs[0], node.inputs[1]
        dtype = np.dtype(self.out_dtype) if self.out_dtype is not None else a.dtype
        return [TensorType(dtype, broadcast(node, a.shape, b.shape))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        a, b = inputs[0], inputs[1]
        y = np.asarray(self.fn(node, a, b))
        return [y.astype(self.out_dtype if self.out_dtype is not None else a.dtype, copy=False)]


class Variadic(Op):
    """y = f(x0, x1, ...) folded pairwise with broadcasting (Sum, Max, Min, Mean)."""

    mapping = MappingType.ONE_TO_ONE
    elementwise = True

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def finish(self, node: Node, acc: np.ndarray, count: int) -> np.ndarray:
        return acc

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr | None:
        """The pairwise scalar formula for codegen; None: no generated code."""
        return None

    def finish_expr(self, node: Node, acc: Expr, count: int) -> Expr:
        return acc

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr | None:
        shape = node.outputs[0].shape
        terms = [read(i, broadcast_index(index, shape, v.shape)) for i, v in enumerate(node.inputs) if v is not None]
        acc = terms[0]
        for term in terms[1:]:
            acc = self.expr(node, acc, term)
        return self.finish_expr(node, acc, len(terms))

    def infer(self, node: Node) -> list[Inferred]:
        vals = input_values(node)
        return [TensorType(vals[0].dtype, broadcast(node, *(v.shape for v in vals)))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        arrays = [x for x in inputs if x is not None]
        acc = arrays[0]
        for x in arrays[1:]:
            acc = self.fn(node, acc, x)
        shape = np.broadcast_shapes(*(x.shape for x in arrays))
        out = np.broadcast_to(self.finish(node, acc, len(arrays)), shape)
        return [np.array(out, dtype=arrays[0].dtype)]


def _codegen_dtypes(node: Node) -> bool:
    """Every input and output has a C type and a static shape (float16 and strings run as fallbacks)."""
    values = [v for v in list(node.inputs) + list(node.outputs) if v is not None]
    return all(v.is_static and v.dtype is not None and ctype(v.dtype) is not None for v in values)


# --- whether a description has generated code: run it once on symbolic inputs --------------------------------

def _reader(node: Node) -> Reader:
    """Input i's element as a placeholder load, for probing."""
    def read(i: int, index: Index) -> Expr:
        value = node.inputs[i]
        return Load("probe", linear(index, value.shape), ctype(value.dtype))
    return read


def probe(op: Op, node: Node) -> str | None:
    """'pointwise', 'kernel' or None (no generated code for this node)."""
    try:
        if type(op).pointwise is not Op.pointwise:
            outputs = [(k, v) for k, v in enumerate(node.outputs) if v is not None]
            for k, v in outputs:
                index = tuple(Var(f"i{d}") for d in range(len(v.shape)))
                if op.pointwise(node, k, index, _reader(node)) is None:
                    return None
            return "pointwise"
        if type(op).kernel is not Op.kernel:
            ctx = KernelContext(node, _reader(node), lambda out, index, value: [], prefix="p")
            return "kernel" if op.kernel(node, ctx) is not None else None
    except Exception:  # noqa: BLE001 - a description that fails on this node means: no generated code
        return None
    return None
