"""What an operator's codegen description works with: the reader of its inputs (prologue) and, for kernel
templates, a context that names loop variables, emits expressions and stores results (epilogue)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..ir.graph import Node
from .emit import Emitter
from .expr import Expr, Index, Var

Reader = Callable[[int, Index], Expr]
Storer = Callable[[int, Index, Expr], list[str]]
Placer = Callable[[np.ndarray], str]

PARALLEL_GRAIN = 1 << 15          # elements of work below which a loop nest stays serial
PARALLEL = "#pragma dnnfusion parallel"   # marks the next loop for the thread pool (codegen.outline)
STACK_ARRAY_MAX = 1 << 17         # elements a kernel may keep in one stack array (1 MiB of 8-byte values)


@dataclass(frozen=True)
class KernelOptions:
    """What the kernel templates are allowed to choose: `winograd` lets 3 x 3 convolutions run as Winograd
    products (off: results bit-close to a direct convolution's, at its speed); `methods` names the method a
    node's template takes, by node name (measured fastest by tuning), instead of its estimate's choice;
    `layouts` where values between blocks take a channel-blocked layout (codegen/layouts.py): "auto" between
    kernels that read and write it fast, "off" nowhere, "all" wherever it is legal (to test every reader)."""

    winograd: bool = True
    methods: tuple[tuple[str, str], ...] = ()
    layouts: str = "auto"

    def method_for(self, node_name: str) -> str | None:
        """The method named for this node, if any."""
        return dict(self.methods).get(node_name)


class KernelContext:
    """Handed to `Op.kernel`: `read(i, index)` gives input i's element (fused producers inlined), `store(out,
    index, value)` the C statements that finish output `out`'s element (fused consumers applied), `var()`
    fresh loop variables, `c(expr)` C text, `scratch(ctype, n)` a named temporary array, `helper(name, code)` a
    file-scope C definition (a function or macro) the kernel calls, `weight(build)` a compile-time array (such
    as weights repacked into a template's layout) placed with the model's weights, `options` what it may choose;
    a template that picks one of several methods names it with `choose` (listed in the compile statistics);
    `output_block` is the channel block of every array output 0's store writes (0: row-major, or mixed)."""

    def __init__(self, node: Node, read: Reader, store: Storer, prefix: str, place: Placer | None = None,
                 options: KernelOptions = KernelOptions(), output_block: int = 0) -> None:
        self.node, self.read, self.store, self.options = node, read, store, options
        self.output_block = output_block
        self.method: str | None = None
        self.prefix = prefix
        self._place = place
        self._vars = 0
        self.scratch_arrays: list[tuple[str, str, int]] = []
        self.helpers: dict[str, str] = {}

    def var(self, hint: str = "i") -> Var:
        self._vars += 1
        return Var(f"{hint}{self._vars}")

    def c(self, e: Expr) -> str:
        """C text for an expression, inline (no shared locals: use `value` for anything sizeable)."""
        return Emitter().c(e)

    def value(self, name: str, e: Expr) -> list[str]:
        """Statements declaring `const T name = e;` with e's shared sub-expressions as locals before it."""
        emitter = Emitter(f"{self.prefix}{name}_")
        emitter.share([e])
        return emitter.lines + [f"const {e.ctype} {name} = {emitter.c(e)};"]

    def scratch(self, ctype_: str, count: int) -> str:
        """A temporary array of `count` elements private to this kernel call (in the arena)."""
        name = f"{self.prefix}scratch{len(self.scratch_arrays)}"
        self.scratch_arrays.append((name, ctype_, count))
        return name

    def weight(self, build: Callable[[], np.ndarray]) -> str:
        """The C name of a read-only array holding `build()` (64-byte aligned, in the weight blob), or a
        placeholder while the template is only probed (then `build`, a repacking of weights, is not run)."""
        return self._place(build()) if self._place is not None else f"{self.prefix}weight"

    def choose(self, method: str) -> None:
        """Record the method the template generates this node with (e.g. "Winograd F(4x4, 3x3)")."""
        self.method = method

    def helper(self, name: str, code: str) -> str:
        """Declare a file-scope definition once per program (the same name must always mean the same code)."""
        self.helpers[name] = code
        return name


def parallel_for(var: Var, extent: int, body: list[str], work: int) -> list[str]:
    """`for (var = 0; var < extent; ++var) { body }`, run on the thread pool when the nest's total work is large
    (the body must not write locals declared outside it: each piece of the loop sees its own copies)."""
    pragma = [PARALLEL] if work >= PARALLEL_GRAIN and extent > 1 else []
    return pragma + [f"for (int64_t {var.name} = 0; {var.name} < {extent}; ++{var.name}) {{"] + \
        ["  " + line for line in body] + ["}"]


def overlapped_groups(first: Var, start: int, stop: int, size: int, body: list[str]) -> list[str]:
    """`body` once per group of `size` consecutive indices in [start, stop) (stop - start >= size), with C
    variable `first` the group's first index: the last group ends at stop, overlapping the one before where
    size does not divide the extent, so a body that handles whole groups needs no remainder. Only for bodies
    that store values computed from inputs they do not write: the overlapped indices run twice."""
    group = Var(f"{first.name}_g")
    return [f"for (int64_t {group.name} = {start}; {group.name} < {stop}; {group.name} += {size}) {{",
            f"  const int64_t {first.name} = {group.name} + {size} <= {stop} ? {group.name} : {stop - size};",
            *indent(body), "}"]


def overlapped_for(var: Var, start: int, stop: int, lanes: int, body: list[str]) -> list[str]:
    """A vectorised loop over start <= var < stop whose last group of `lanes` iterations overlaps the one before
    instead of running a scalar remainder (gcc 12 leaves up to lanes - 1 iterations scalar, which for an
    epilogue with exp or a division costs as much as the vectors). Only for bodies that store a value computed
    from inputs they do not write: the overlapped iterations run twice."""
    extent = stop - start
    if extent < lanes or extent % lanes == 0:
        return ["#pragma omp simd", f"for (int64_t {var.name} = {start}; {var.name} < {stop}; ++{var.name}) {{",
                *indent(body), "}"]
    first, lane = Var(f"{var.name}_g0"), Var(f"{var.name}_l")
    return overlapped_groups(first, start, stop, lanes, [
        "#pragma omp simd", f"for (int64_t {lane.name} = 0; {lane.name} < {lanes}; ++{lane.name}) {{",
        f"  const int64_t {var.name} = {first.name} + {lane.name};", *indent(body), "}"])


def indent(lines: list[str]) -> list[str]:
    """C lines one level deeper."""
    return ["  " + line for line in lines]


def fits_stack(count: int) -> bool:
    """Whether a kernel may declare a stack array of `count` elements (the thread pool's threads have 8 MiB)."""
    return count <= STACK_ARRAY_MAX


def local_array(ctype_: str, name: str, count: int, init: str | None = None) -> str:
    """Declare a stack array inside a kernel, 64-byte aligned. gcc 12 at -O3 -march=native vectorises copies
    out of a small local array with aligned moves while placing the array at an 8-mod-16 address in a leaf
    function's red zone (MaxPool row buffers crashed); an explicit alignment makes it realign the frame.
    Templates whose array grows with the shape check `fits_stack` first and decline (a counted fallback)."""
    if not fits_stack(count):
        raise ValueError(f"a {count}-element stack array would overflow a thread's stack")
    value = f" = {init}" if init is not None else ""
    return f"{ctype_} {name}[{count}] __attribute__((aligned(64))){value};"


def serial_for(var: Var, extent: int, body: list[str], simd: bool = False) -> list[str]:
    pragma = ["#pragma omp simd"] if simd else []
    return pragma + [f"for (int64_t {var.name} = 0; {var.name} < {extent}; ++{var.name}) {{"] + \
        ["  " + line for line in body] + ["}"]
