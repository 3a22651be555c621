"""The matrix-product template every product in a model goes through (MatMul, Gemm, convolutions as im2col
products, transposed convolutions): operands as strided or packed buffers or as expressions, register tiles of
accumulators (nn: rows x vectors of B; nt: dot products), panels of B copied when its stride aliases in cache,
and the result handed to the caller's epilogue per element. Tuning constants live here."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from ..kir.expr import C_TYPES, Expr, Index, Lit, Load, Var, broadcast_index, floordiv, linear
from ..kir.expr import mod, numel, strides, unravel
from ..kir.kernel import KernelContext, indent, local_array, overlapped_for, parallel_for, serial_for
from ..machine import l2_bytes
from .window import table
from . import microkernel
from .vectors import transpose_helper


TILE_ROWS = 6         # rows of an nn tile: 6 rows x 2 vectors of accumulators keep 12 of 16 AVX2 registers
TILE_BYTES = 64       # columns of an nn tile: two 256-bit vectors of the accumulation type
DOT_TILE = (2, 4)     # rows x columns of an nt tile: 8 dot products sharing every vector they load
PANEL_MIN_ROWS = 32   # rows of A from which copying a plain B into column panels pays for itself...
PANEL_MIN_DEPTH = 256  # ...when its columns are long enough to overflow the few cache sets they alias to
ALIASING_BYTES = 1024  # a B row stride that is a multiple of this maps a tile's columns to a few cache sets
PACKED_MIN_COLUMNS = 8  # columns from which the intrinsics microkernels run (fewer: the portable dot products)
PACKED_MIN_ROWS = 4     # rows of A from which packing a B computed per call pays for the microkernels
L1_LINE, L1_SETS = 64, 64   # bytes per cache line and sets of the L1 data cache (32-48 KiB, 8-12 ways)...
L1_ROWS_PER_SET = 4         # ...so rows of A read in place may share a set this many to a tile
A_IN_PLACE_BYTES = 16384    # a column-major A larger than this (half the smallest L1) and swept once per column
                            # tile is packed per call: each tile's rows then stream from L2 as whole lines, not
                            # a few floats of every line. Pointwise 7 x 7 convolutions with pixels as rows, AMD
                            # EPYC (AVX2), 1 thread: 320->1280 0.625 -> 0.468 ms, 1152->320 0.579 -> 0.444
PANEL_CACHE_SHARE = 0.75     # of L2: a column tile of B over the whole depth beyond this does not stay there
DEPTH_CHUNK = 256             # depth per microkernel call when the depth is split (a column tile's B chunk: 32 KiB)
BLOCK_COLUMN_TILES = 4        # column tiles of a task that splits the depth...
BLOCK_TILE_FLOATS = 16384     # ...and its sums, at most (64 KiB: the block stays in L2 across chunks)
SHALLOW_DEPTH = 160           # product depth up to which pixel-row tiles store whole vectors (`column_step`)
RAGGED_MAX_ROWS = 128         # rows of A up to which a B whose last column tile is partial is read in place but for
                              # that tile, rather than copied whole into panels: the copy is then a large share of
                              # the work. Pointwise convolutions, Intel Xeon (AVX-512), block times 1 / 2 threads:
                              # 32->64 at 150 x 150 1.04 / 0.61 -> 1.02 / 0.53 ms, 128->128 at 75 x 75 1.46 / 0.87
                              # -> 1.38 / 0.73; with more rows the unaligned rows read in place cost more than the
                              # copy saves (256->256 at 38 x 38 1.33 -> 1.37, 512->512 at 19 x 19 1.21 -> 1.30)
MIN_TASKS = 16                # tasks a split-depth product keeps at least, shrinking its blocks, so threads share
                              # it evenly (blocks of even size; a thread's share is off by one task at most)
ITEM_SIZE = {c: d.itemsize for d, c in C_TYPES.items()}


@dataclass(frozen=True)
class Operand:
    """One side of a batched matrix product as generated code reads it: its own batch extents (1 where it
    broadcasts), rows x cols, and its element in the accumulation type at (own batch index, row, col).
    `strides` (row, column) is set when that element is a plain load from an array at those strides; `panel`
    when the array holds column panels of that width, [batch][panel][row][column in panel], so that the
    columns of an nn tile over all rows are one contiguous run (no cache-set conflicts between rows):
    `panel_at(batch index, row, first column of a panel, column in it)` then loads without a division.
    `constant` holds the values when they are weights known at compile time (packed then, not per call)."""

    batch: tuple[int, ...]
    rows: int
    cols: int
    element: Callable[[Index, Expr, Expr], Expr]
    strides: tuple[int, int] | None = None
    panel: int = 0
    panel_at: Callable[[Index, Expr, Expr, Expr], Expr] | None = None
    constant: np.ndarray | None = None         # the values at compile time, (*batch, rows, cols), when known


@dataclass(frozen=True)
class Product:
    """out[b, i, j] = sum over k of a[b, i, k] * b[b, k, j] in C type `acc` over the broadcast `batch`; each
    finished sum goes to `store(batch index, i, column index, sum)`, which returns the C statements that
    write it. The column index is j unravelled to the shape `columns` (default: j itself), without a division
    per element, so a store along a row of that shape stays a contiguous, vectorisable loop. With `valid`,
    the last axis of `columns` is a padded grid of which only the first `valid` entries are stored."""

    batch: tuple[int, ...]
    a: Operand
    b: Operand
    acc: str
    store: Callable[[Index, Expr, Index, Expr], list[str]]
    columns: tuple[int, ...] | None = None
    valid: int | None = None       # only columns whose last index is below this are stored (a padded grid)
    by_columns: bool = False       # rows are consecutive pixels of a row-major output: tiles finish column by
                                   # column (`column_finish`)


def probe_index(rank: int) -> Index:
    """Symbolic indices to read an input at, to see what its read loads (`loaded_buffer`, prologue matching)."""
    return tuple(Var(f"probe{d}") for d in range(rank))


def loaded_buffer(ctx: KernelContext, i: int, shape: Sequence[int], ct: str,
                  offset: Callable[[Index], Expr]) -> str | None:
    """The array input `i` is loaded from when the block's read of it at an index is one plain load of C type
    `ct` at `offset(index)` (no fused producer); None otherwise."""
    probe = probe_index(len(shape))
    e = ctx.read(i, probe)
    if isinstance(e, Load) and e.ctype == ct and e.index == offset(probe):
        return e.buffer
    return None


def direct_buffer(ctx: KernelContext, i: int, shape: Sequence[int], ct: str) -> str | None:
    """The array input `i` is loaded from when the block reads it as it is (no fused producer, its own
    row-major layout, already of C type `ct`); None otherwise."""
    return loaded_buffer(ctx, i, shape, ct, lambda index: linear(index, shape))


def batch_offset(bidx: Index, batch: Sequence[int], batch_strides: Sequence[int]) -> Expr:
    """The element offset of a batch entry (broadcast axes contribute nothing)."""
    offset: Expr = Lit(0)
    for e, s, d in zip(bidx, batch_strides, batch):
        if d != 1:
            offset = offset + e * s
    return offset


def strided(buffer: str, ct: str, batch: tuple[int, ...], batch_strides: Sequence[int], rows: int, cols: int,
            row_stride: int, col_stride: int, constant: np.ndarray | None = None) -> Operand:
    """An operand loaded from `buffer` at the given element strides (holding `constant` when it is known)."""
    def element(bidx: Index, r: Expr, c: Expr) -> Expr:
        return Load(buffer, batch_offset(bidx, batch, batch_strides) + r * row_stride + c * col_stride, ct)
    return Operand(batch, rows, cols, element, (row_stride, col_stride), constant=constant)


def panelled(buffer: str, ct: str, batch: tuple[int, ...], rows: int, cols: int, panel: int) -> Operand:
    """An operand stored in column panels of width `panel` (the last one partly used)."""
    size = -(-cols // panel) * panel * rows
    batch_strides = [s * size for s in strides(batch)]

    def panel_at(bidx: Index, r: Expr, first: Expr, c: Expr) -> Expr:
        return Load(buffer, batch_offset(bidx, batch, batch_strides) + first * rows + r * panel + c, ct)

    def element(bidx: Index, r: Expr, c: Expr) -> Expr:
        return panel_at(bidx, r, floordiv(c, panel) * panel, mod(c, panel))
    return Operand(batch, rows, cols, element, panel=panel, panel_at=panel_at)


def layout(ctx: KernelContext, batch: tuple[int, ...], rows: int, cols: int, ct: str, panel: int = 0) -> Operand:
    """A scratch array for an operand: row-major, or in column panels of width `panel` (one partly used
    panel when `panel` exceeds the columns)."""
    if panel and panel != cols:
        size = -(-cols // panel) * panel * rows
        return panelled(ctx.scratch(ct, numel(batch) * size), ct, batch, rows, cols, panel)
    size = rows * cols
    return strided(ctx.scratch(ct, numel(batch) * size), ct, batch, [s * size for s in strides(batch)], rows, cols,
                   cols, 1)


def pack(ctx: KernelContext, op: Operand, ct: str, panel: int = 0) -> tuple[list[str], Operand]:
    """C statements that write `op` (fused producers applied once per element) into a scratch array,
    row-major or in column panels of width `panel`, and the operand that reads it there."""
    target = layout(ctx, op.batch, op.rows, op.cols, ct, panel)
    size = numel(op.batch) * op.rows * op.cols
    if not target.panel:
        row, col = ctx.var("p"), ctx.var("c")
        bidx, r = unravel(floordiv(row, op.rows), op.batch), mod(row, op.rows)
        body = ctx.value("pv", op.element(bidx, r, col)) + [f"{ctx.c(target.element(bidx, r, col))} = pv;"]
        return parallel_for(row, numel(op.batch) * op.rows, serial_for(col, op.cols, body), size), target
    panels = -(-op.cols // panel)
    run, col, width = ctx.var("p"), ctx.var("c"), ctx.var("w")
    bidx = unravel(floordiv(run, panels * op.rows), op.batch)
    if op.strides is not None and op.strides[0] == 1:     # a transposed source: down each panel, rows in cache
        first, r = mod(floordiv(run, op.rows), panels) * panel, mod(run, op.rows)
    else:                                               # along each row, reading it in order
        first, r = mod(run, panels) * panel, mod(floordiv(run, panels), op.rows)
    body = ctx.value("pv", op.element(bidx, r, first + col)) + [f"{ctx.c(target.panel_at(bidx, r, first, col))} = pv;"]
    tail = op.cols % panel
    count = f"{ctx.c(first)} + {panel} <= {op.cols} ? {panel} : {tail}" if tail else str(panel)
    loop = [f"const int64_t {width.name} = {count};", f"for (int64_t {col.name} = 0; {col.name} < {width.name}; "
            f"++{col.name}) {{", *indent(body), "}"]
    return parallel_for(run, numel(op.batch) * panels * op.rows, loop, size), target


def zero_tails(ctx: KernelContext, target: Operand, batch: tuple[int, ...], rows: int, cols: int) -> list[str]:
    """Zero the unused columns of the last column panel of `target` (so a tile that computes them reads
    numbers, not whatever the arena held)."""
    panel = target.panel
    tail = cols % panel if panel else 0
    if not tail:
        return []
    run, col = ctx.var("p"), ctx.var("c")
    bidx, r = unravel(floordiv(run, rows), batch), mod(run, rows)
    first = Lit(cols - tail)
    store = f"{ctx.c(target.panel_at(bidx, r, first, col))} = 0;"
    return [f"for (int64_t {run.name} = 0; {run.name} < {numel(batch) * rows}; ++{run.name})",
            f"  for (int64_t {col.name} = {tail}; {col.name} < {panel}; ++{col.name}) {store}"]


def nn_tile(ct: str, m: int, n: int) -> tuple[int, int]:
    """Rows and columns of an nn tile of accumulators of C type `ct` for an m x n product."""
    return min(TILE_ROWS, m), min(max(1, TILE_BYTES // ITEM_SIZE[ct]), n)


def address(ctx: KernelContext, e: Expr) -> str:
    """The C pointer to the array element a plain load `e` reads."""
    assert isinstance(e, Load)
    return f"({e.buffer} + {ctx.c(e.index)})"


def packed_b(ctx: KernelContext, p: Product, width: int, ragged: bool = False
             ) -> tuple[list[str], Callable[[Index, Var], str], str, Callable[[Var], str] | None] | None:
    """B for the microkernels: rows of `width` columns starting at a tile's first column, `ldb` apart. Weights
    are packed into column panels at compile time; a B whose rows are contiguous and tile exactly is read in
    place; with `ragged`, one whose columns end in a partial tile is read in place all the same but for that
    last tile, copied alone into a strip (`ldb_at(column tile)` then gives each tile's row step); any other B
    is packed into panels per call (None when too few rows of A would reuse the copy). Returns the packing
    statements, a tile's first element, ldb and `ldb_at` (None: ldb for every tile)."""
    b, k, n = p.b, p.b.rows, p.b.cols
    tiles = -(-n // width)
    if b.constant is not None:
        def panels(constant: np.ndarray = b.constant) -> np.ndarray:
            padded = np.zeros((*b.batch, k, tiles * width), np.float32)
            padded[..., :n] = constant
            return padded.reshape(*b.batch, k, tiles, width).swapaxes(-3, -2)
        name = ctx.weight(panels)
        steps = [s * tiles * k * width for s in strides(b.batch)]
        return [], lambda bidx, jt: f"({name} + {ctx.c(batch_offset(bidx, b.batch, steps) + jt * (k * width))})", \
            str(width), None
    if b_in_place(b, width):
        return [], lambda bidx, jt: address(ctx, b.element(bidx, Lit(0), jt * width)), str(b.strides[0]), None
    if ragged and whole_tiles_in_place(b, width):
        return ragged_b(ctx, b, width)
    if p.a.rows < PACKED_MIN_ROWS:
        return None
    lines, target = pack(ctx, b, "float", width)
    lines += zero_tails(ctx, target, b.batch, k, n)
    def start(bidx: Index, jt: Var) -> str:
        if target.panel_at is None:                  # a single panel: plain rows of `width` columns
            return address(ctx, target.element(bidx, Lit(0), Lit(0)))
        return address(ctx, target.panel_at(bidx, Lit(0), jt * width, Lit(0)))
    return lines, start, str(width), None


def ragged_b(ctx: KernelContext, b: Operand, width: int
             ) -> tuple[list[str], Callable[[Index, Var], str], str, Callable[[Var], str]]:
    """`packed_b` for a plain B whose last column tile is partial: the whole tiles read where they lie, the last
    one's columns copied (zero-padded to `width`) into a strip per batch entry, read `width` apart."""
    k, n = b.rows, b.cols
    full, tail = divmod(n, width)
    strip = ctx.scratch("float", numel(b.batch) * k * width)
    row, col = ctx.var("p"), ctx.var("c")
    bidx, r = unravel(floordiv(row, k), b.batch), mod(row, k)
    body = ctx.value("pv", b.element(bidx, r, col + full * width)) + [f"{strip}[{ctx.c(row * width + col)}] = pv;"]
    lines = serial_for(row, numel(b.batch) * k, serial_for(col, tail, body, simd=True) +
                       [f"for (int64_t {col.name} = {tail}; {col.name} < {width}; ++{col.name}) "
                        f"{strip}[{ctx.c(row * width + col)}] = 0;"])
    steps = [s * k * width for s in strides(b.batch)]

    def start(bidx: Index, jt: Var) -> str:
        own = address(ctx, b.element(bidx, Lit(0), jt * width))
        return f"({jt.name} < {full} ? {own} : {strip} + {ctx.c(batch_offset(bidx, b.batch, steps))})"
    return lines, start, str(b.strides[0]), lambda jt: f"({jt.name} < {full} ? {b.strides[0]} : {width})"


def b_in_place(b: Operand, width: int) -> bool:
    """Whether the microkernels read B where it lies, in rows of `width` columns: contiguous along its rows,
    whole column tiles, and rows that do not alias in the cache (or few of them)."""
    return b.strides is not None and b.strides[1] == 1 and b.cols % width == 0 and \
        (b.rows <= 16 or b.strides[0] * 4 % ALIASING_BYTES != 0)


def reads_b_in_place(b: Operand, rows: int, width: int) -> bool:
    """Whether the microkernels read B, under `rows` rows of A, where it lies (`b_in_place`), perhaps but for a
    partial last column tile (`packed_b`'s ragged B, within RAGGED_MAX_ROWS)."""
    return b_in_place(b, width) or rows <= RAGGED_MAX_ROWS and whole_tiles_in_place(b, width)


def whole_tiles_in_place(b: Operand, width: int) -> bool:
    """Whether B's whole column tiles (at least one) can be read where they lie (`b_in_place` for them)."""
    return b.cols > width and b_in_place(replace(b, cols=b.cols - b.cols % width), width)


def depth_splits(depth: int, width: int) -> bool:
    """Whether a column tile `width` wide over `depth` rows of B overflows PANEL_CACHE_SHARE of L2, so that a
    product splits its depth into chunks."""
    return depth * width * 4 > PANEL_CACHE_SHARE * l2_bytes()


def tile_width(m: int, n: int) -> int | None:
    """Columns of the microkernels' full tiles over an m x n float product on this CPU (None: no microkernels)."""
    isa = microkernel.target_isa()
    if isa is None:
        return None
    return isa.tile_shape(m, n)[1] * isa.lanes


def rows_in_place(a: Operand, rows: int, sweeps: int = 1) -> bool:
    """Whether the microkernels read A where it lies, going through it `sweeps` times (once per column tile):
    column-major (a tile's rows side by side, as packed) and read once or small enough to stay in L1
    (A_IN_PLACE_BYTES), or row-major with rows that spread over L1's sets (at most L1_ROWS_PER_SET of a tile's
    rows per set)."""
    if a.strides is None or a.constant is not None:
        return False
    row_stride, col_stride = a.strides
    if row_stride == 1:
        return col_stride == rows or sweeps <= 1 or a.rows * a.cols * 4 <= A_IN_PLACE_BYTES
    if col_stride != 1:
        return False
    lines = row_stride * 4 // L1_LINE if row_stride * 4 % L1_LINE == 0 else 1
    sets = L1_SETS // math.gcd(L1_SETS, lines)
    return -(-rows // sets) <= L1_ROWS_PER_SET


def packed_a(ctx: KernelContext, a: Operand, rows: int, sweeps: int = 1
             ) -> tuple[list[str], Callable[[Index, Var], str], tuple[int, int]]:
    """A for the microkernels, gone through `sweeps` times: where it lies (`rows_in_place`), or per tile of
    `rows` rows with its columns one after another and the rows of each interleaved (weights at compile time,
    anything else per call). Returns
    the packing statements, a tile's first element and the steps (row, column) between A's elements."""
    m, k = a.rows, a.cols
    if rows_in_place(a, rows, sweeps):
        return [], lambda bidx, it: address(ctx, a.element(bidx, it * rows, Lit(0))), a.strides
    tiles = -(-m // rows)
    steps = [s * tiles * k * rows for s in strides(a.batch)]
    if a.constant is not None:
        def interleaved(constant: np.ndarray = a.constant) -> np.ndarray:
            padded = np.zeros((*a.batch, tiles * rows, k), np.float32)
            padded[..., :m, :] = constant
            return padded.reshape(*a.batch, tiles, rows, k).swapaxes(-2, -1)
        name = ctx.weight(interleaved)
        lines: list[str] = []
    elif a.strides is not None and a.strides[0] == 1:
        name = ctx.scratch("float", numel(a.batch) * tiles * k * rows)
        lines = column_major_pack(ctx, a, rows, name, steps)
    else:
        name = ctx.scratch("float", numel(a.batch) * tiles * k * rows)
        row, col = ctx.var("p"), ctx.var("c")
        bidx, i = unravel(floordiv(row, m), a.batch), mod(row, m)
        slot = batch_offset(bidx, a.batch, steps) + floordiv(i, rows) * (k * rows) + col * rows + mod(i, rows)
        body = ctx.value("pv", a.element(bidx, i, col)) + [f"{name}[{ctx.c(slot)}] = pv;"]
        lines = parallel_for(row, numel(a.batch) * m, serial_for(col, k, body), numel(a.batch) * m * k)
    return lines, lambda bidx, it: f"({name} + {ctx.c(batch_offset(bidx, a.batch, steps) + it * (k * rows))})", \
        (1, rows)


def column_major_pack(ctx: KernelContext, a: Operand, rows: int, name: str, steps: Sequence[int]) -> list[str]:
    """Statements packing a column-major A (consecutive rows adjacent: a convolution's input planes as the
    pixels x channels operand) into `name` tile by tile: per column, the tile's rows are one contiguous run
    read and one written. Pixel by pixel across the channels instead, each load is a plane apart (a power of
    two at 128 x 128, so every one lands in the same cache set): 256 -> 256 at 128 x 128, 2 threads, plain
    input into a blocked output, 18.2 ms."""
    m, k, tiles = a.rows, a.cols, -(-a.rows // rows)
    task, col, r = ctx.var("p"), ctx.var("c"), ctx.var("r")
    bidx, tile = unravel(floordiv(task, tiles), a.batch), mod(task, tiles)
    start = Var(f"{task.name}_row")

    def copy(height: int) -> list[str]:
        slot = batch_offset(bidx, a.batch, steps) + tile * (k * rows) + col * rows + r
        body = ctx.value("pv", a.element(bidx, start + r, col)) + [f"{name}[{ctx.c(slot)}] = pv;"]
        return serial_for(col, k, serial_for(r, height, body, simd=True))
    head = [f"const int64_t {start.name} = {ctx.c(tile * rows)};"]
    return parallel_for(task, numel(a.batch) * tiles, head + edges(start, rows, m, copy), numel(a.batch) * m * k)


def packed_product(ctx: KernelContext, p: Product) -> list[str] | None:
    """The product on this CPU's intrinsics microkernels (microkernel.py, driven by `microkernel_tasks`), or
    None where the portable template serves better (no vector ISA, not float32, too few columns, or a B not
    worth packing). The product's store (the fused epilogue) runs on each finished tile, vectorized along
    the columns."""
    isa = microkernel.target_isa()
    m, k, n = p.a.rows, p.a.cols, p.b.cols
    if isa is None or p.acc != "float" or n < PACKED_MIN_COLUMNS or k < 1:
        return None
    rows, vectors, _ = isa.tile_shape(m, n, column_step(isa, m, k) if p.by_columns else 1)
    width = vectors * isa.lanes
    b = packed_b(ctx, p, width, ragged=not depth_splits(k, width) and m <= RAGGED_MAX_ROWS)
    if b is None:
        return None
    b_lines, b_at, ldb, ldb_at = b
    a_lines, a_at, a_steps = packed_a(ctx, p.a, rows, -(-n // width))

    tiling = Tiling(isa, p.batch, m, n, k, (0,), rows, vectors, a_steps, int(ldb),
                    lambda bidx, it: a_at(broadcast_index(bidx, p.batch, p.a.batch), it),
                    lambda bidx, jt: b_at(broadcast_index(bidx, p.batch, p.b.batch), jt),
                    column_finish(ctx, p, isa.lanes) if p.by_columns else tile_finish(ctx, p, width),
                    b_batch=p.b.batch, ldb_at=ldb_at)
    assert ldb_at is None or not tiling.splits_depth()
    return b_lines + a_lines + microkernel_tasks(ctx, tiling)


def tile_finish(ctx: KernelContext, p: Product, width: int) -> Callable[[Index, Var, Var, int, int, str, int],
                                                                      list[str]]:
    """A Tiling's `finish` for product `p` with full tiles `width` columns wide: the tile to p's store."""
    def finish(bidx: Index, i0: Var, j0: Var, got: int, cols: int, tile: str, stride: int) -> list[str]:
        return Tile(ctx, p, p.a, p.b, bidx, i0, j0, width).finish(got, cols, tile, stride)
    return finish


def column_step(isa: microkernel.Isa, rows: int, depth: int | None = None) -> int:
    """Rows of the tiles (a multiple of this) over `rows` that `column_finish` stores: half a vector on rows
    long enough that a remainder tile costs little, so that each column's run is whole vectors (8 pixels as
    one ymm, 16 as one zmm) rather than two overlapping ones, each evaluating the epilogue's math. YOLOv4, 2
    threads, 32 -> 64 3 x 3 at 208 x 208 with Mish and a residual add: 11 x 2 tiles 11.0 ms, 8 x 2 8.6-9.2;
    but 28 pixels in 8 x 2 tiles (8 + 8 + 8 + 4) ran 12% slower than 10 x 2 (ResNet's 3 x 3 stride 2). Where
    the product is shallow (`depth` up to SHALLOW_DEPTH) the finish weighs as much as the sums, and a whole
    vector pays: one 16 x 16 transpose and full stores per 16 channels (16 x 16 tiles instead of 8 x 32).
    Not on AVX2, whose half vectors would leave 4-row tiles, too thin for its 16 registers' 6 x 2."""
    if isa.lanes < 16 or rows < 4 * isa.lanes:
        return 1
    return isa.lanes if depth is not None and depth <= SHALLOW_DEPTH else isa.lanes // 2


def column_finish(ctx: KernelContext, p: Product, lanes: int) -> Callable[[Index, Var, Var, int, int, str, int],
                                                                       list[str]]:
    """A Tiling's `finish` for a product whose rows are pixels and whose columns are the channels of a row-major
    output: the tile is transposed by register blocks of `lanes` x `lanes` into a column-major copy, then
    column by column (an output channel's plane) the tile's rows (consecutive pixels) go through the epilogue
    and store as one contiguous vector run. Read straight from the tile, a column is strided, which gcc does
    not vectorize: the epilogue (YOLOv4's Mish) then ran one element at a time."""
    def finish(bidx: Index, i0: Var, j0: Var, got: int, cols: int, tile: str, stride: int) -> list[str]:
        r, c = Var(f"{i0.name}r"), Var(f"{j0.name}c")
        height, blocks = -(-got // lanes) * lanes, -(-cols // lanes)
        columns = f"{tile}_t"
        lines = [local_array("float", columns, blocks * lanes * height)]
        for r0 in range(0, got, lanes):
            transpose = transpose_helper(ctx, lanes, min(lanes, got - r0))
            lines += [f"for (int64_t {c.name} = 0; {c.name} < {blocks}; ++{c.name}) {transpose}({tile} + "
                      f"{r0 * stride} + {c.name} * {lanes}, {stride}, {columns} + {c.name} * {lanes * height} + {r0}, "
                      f"{height});"]
        value = Load(columns, c * height + r, "float")
        run = lanes if got >= lanes else lanes // 2
        return lines + serial_for(c, cols, overlapped_for(r, 0, got, run, p.store(bidx, i0 + r, (j0 + c,), value)))
    return finish


@dataclass(frozen=True)
class Tiling:
    """A product as the microkernels run it: `rows` x `vectors` register tiles over m x n for each entry of
    `batch`; the depth is `segments` runs of `depth` (A's columns one after another; B's rows `ldb` apart,
    each run starting `segments[s]` elements past the column tile's B start: one run for a plain product,
    one per tap for an implicit-GEMM convolution). `a_at(batch index, row tile)` and `b_at(batch index,
    column tile)` are C pointers to a tile's operands; `finish(batch index, i0, j0, rows, cols, tile, stride)`
    the statements that hand a finished tile (rows `stride` apart) to the epilogue. `spans(batch index)`, when
    given, is (first, count): the entry sums only segments first .. first + count - 1 (a convolution's taps that
    land in its padding add nothing and are left out), `b_at` then pointing at segment `first`'s rows and
    `segments` evenly spaced so that the same offsets serve every entry; with `shift_a` (segments are A's
    offsets), the offsets and B's rows are taken from segment `first` on instead."""

    isa: microkernel.Isa
    batch: tuple[int, ...]
    m: int
    n: int
    depth: int
    segments: tuple[int, ...]
    rows: int
    vectors: int
    a_steps: tuple[int, int]
    ldb: int
    a_at: Callable[[Index, Var], str]
    b_at: Callable[[Index, Var], str]
    finish: Callable[[Index, Var, Var, int, int, str, int], list[str]]
    spans: Callable[[Index], tuple[str, str]] | None = None   # (first segment, count) per batch entry, C
    shift_a: bool = False     # the segments' offsets are A's (elements), B's rows running on through them
    store_at: Callable[[Index, Var, Var], str] | None = None  # (batch index, i0, j0) -> where a finished tile
    ldc: int = 0                                              # goes as it is, rows ldc apart (no `finish`)
    b_batch: tuple[int, ...] | None = None    # B's own batch extents (1 where one B serves every entry), if known
    ldb_at: Callable[[Var], str] | None = None  # B's row step per column tile (C), where it is not ldb for all
                                                # (one plain segment, depth unsplit: `packed_b`'s ragged B)

    @property
    def width(self) -> int:
        return self.vectors * self.isa.lanes

    def splits_depth(self) -> bool:
        """Whether a column tile of B over the whole depth overflows PANEL_CACHE_SHARE of L2 (the depth is then
        split into chunks; segments spans are not supported there)."""
        return depth_splits(self.depth * len(self.segments), self.width)

    def b_reused(self) -> bool:
        """Whether one B (`b_batch` all ones) serves several batch entries and is larger than PANEL_CACHE_SHARE
        of L2, so that going through it once per entry would stream it from memory each time: a convolution
        with each output row's pixels as rows (SSD's 512 -> 546 head at 5 x 5: 10 MB of weights, 5 rows)."""
        b_bytes = self.n * self.depth * len(self.segments) * 4
        return self.b_batch is not None and numel(self.b_batch) == 1 and numel(self.batch) > 1 and \
            b_bytes > PANEL_CACHE_SHARE * l2_bytes()

    def a_streams(self) -> bool:
        """Whether A (over the whole depth) is larger than B and than PANEL_CACHE_SHARE of L2, so that going
        through it once per column tile would stream it from memory each time: a convolution on a small plane
        with large weights (SSD's 512 -> 546 head at 5 x 5: 10 MB of weights, two column tiles)."""
        a_bytes = self.m * self.depth * len(self.segments) * 4
        return self.tiles[1] > 1 and a_bytes > max(self.n * self.depth * 4, PANEL_CACHE_SHARE * l2_bytes())

    @property
    def tiles(self) -> tuple[int, int]:
        """Row tiles and column tiles."""
        return -(-self.m // self.rows), -(-self.n // self.width)

    def kernel(self, ctx: KernelContext, got: int, segmented: bool = False, accumulate: bool = False,
               strided: bool = False) -> str:
        """The microkernel for a tile of `got` rows, declared once per program."""
        args = (self.isa, got, self.vectors, self.a_steps, segmented, accumulate, self.shift_a, strided)
        return ctx.helper(microkernel.name(*args), microkernel.code(*args))


def microkernel_tasks(ctx: KernelContext, t: Tiling, parallel: bool = True) -> list[str]:
    """One loop over the tiles of a product (on the thread pool unless `parallel` is False: a product inside
    an outer parallel loop). Where a column tile of B over the whole depth stays in
    L2 (PANEL_CACHE_SHARE of it), each task is one tile: one microkernel call over the full depth. Deeper
    products split the depth into chunks of DEPTH_CHUNK and each task owns a block of tiles
    (BLOCK_TILE_FLOATS of sums): chunk by chunk, every tile of the block adds that chunk's sums, so a chunk
    of B is reused by all the block's row tiles while it is in L1/L2 and A streams once."""
    row_tiles, col_tiles = t.tiles
    depth = t.depth * len(t.segments)
    work = numel(t.batch) * t.m * t.n * depth
    i0, j0 = ctx.var("i"), ctx.var("j")
    task = ctx.var("t")
    if not t.splits_depth():
        it, jt = ctx.var("it"), ctx.var("jt")
        row = f"{i0.name} = {it.name} * {t.rows}"
        col = f"{j0.name} = {jt.name} * {t.width}"
        if t.b_reused():        # each column tile of the one B under every batch entry's row tiles in turn
            entry = ctx.var("b")
            head = [f"const int64_t {it.name} = {task.name} % {row_tiles}, {row};",
                    f"const int64_t {entry.name} = {task.name} / {row_tiles} % {numel(t.batch)};",
                    f"const int64_t {jt.name} = {task.name} / {row_tiles * numel(t.batch)}, {col};"]
            bidx = unravel(entry, t.batch)
        else:
            if t.a_streams():   # each row tile of A over all column tiles in turn, while it is in cache
                head = [f"const int64_t {jt.name} = {task.name} % {col_tiles}, {col};",
                        f"const int64_t {it.name} = {task.name} / {col_tiles} % {row_tiles}, {row};"]
            else:               # each column tile of B under all row tiles in turn
                head = [f"const int64_t {it.name} = {task.name} % {row_tiles}, {row};",
                        f"const int64_t {jt.name} = {task.name} / {row_tiles} % {col_tiles}, {col};"]
            bidx = _batch_index(ctx, task, t.batch, row_tiles * col_tiles, head)
        head.append(local_array("float", "tile", t.rows * t.width))
        a_ptr, b_ptr = t.a_at(bidx, it), t.b_at(bidx, jt)
        lines: list[str] = []
        if (len(t.segments) > 1 or t.spans is not None) and t.store_at is None:
            offsets = ctx.var("seg_offsets")
            lines.append(table(offsets.name, t.segments))

        def tile(got: int) -> list[str]:
            if t.store_at is not None:
                contiguous = all(offset == s * t.depth * t.ldb for s, offset in enumerate(t.segments))
                assert t.n % t.width == 0 and contiguous and not t.shift_a, \
                    "tiles stored as they are need whole column tiles and segments that run on one after another"
                depth, a_first = (t.depth * len(t.segments), "0") if t.spans is None else \
                    (f"{t.spans(bidx)[1]} * {t.depth}", f"{t.spans(bidx)[0]} * {t.depth * t.a_steps[1]}")
                return [f"{t.kernel(ctx, got, strided=True)}({depth}, ({a_ptr} + {a_first}), {b_ptr}, "
                        f"{t.ldb}, {t.store_at(bidx, i0, j0)}, {t.ldc});"]
            if t.spans is not None and t.shift_a:      # A's offsets from segment first on, B's rows from its own
                first, count = t.spans(bidx)
                call = f"{t.kernel(ctx, got, True)}({t.depth}, {count}, ({offsets.name} + {first}), {a_ptr}, " \
                       f"({b_ptr} + {first} * {t.depth * t.ldb}), {t.ldb}, tile);"
            elif t.spans is not None:
                first, count = t.spans(bidx)
                call = f"{t.kernel(ctx, got, True)}({t.depth}, {count}, {offsets.name}, ({a_ptr} + " \
                       f"{first} * {t.depth * t.a_steps[1]}), {b_ptr}, {t.ldb}, tile);"
            elif len(t.segments) > 1:
                call = f"{t.kernel(ctx, got, True)}({t.depth}, {len(t.segments)}, {offsets.name}, {a_ptr}, {b_ptr}, " \
                       f"{t.ldb}, tile);"
            else:
                a_first, b_first = (t.segments[0], 0) if t.shift_a else (0, t.segments[0])
                ldb = t.ldb if t.ldb_at is None else t.ldb_at(jt)
                call = f"{t.kernel(ctx, got)}({t.depth}, ({a_ptr} + {a_first}), ({b_ptr} + {b_first}), {ldb}, tile);"
            return [call] + edges(j0, t.width, t.n, lambda cols: t.finish(bidx, i0, j0, got, cols, "tile", t.width))
        loop = parallel_for if parallel else lambda var, extent, body, work: serial_for(var, extent, body)
        return lines + loop(task, numel(t.batch) * row_tiles * col_tiles, head + edges(i0, t.rows, t.m, tile), work)
    if t.spans is not None:
        raise ValueError("segment spans need a depth that fits the cache (Tiling.splits_depth)")
    chunks = []          # (A offset, B offset) in elements, and the chunk's depth
    for s, offset in enumerate(t.segments):        # the segment's start along A and along B, then its chunks
        a_start, b_start = (offset, s * t.depth * t.ldb) if t.shift_a else (s * t.depth * t.a_steps[1], offset)
        chunks += [(a_start + k0 * t.a_steps[1], b_start + k0 * t.ldb, min(DEPTH_CHUNK, t.depth - k0))
                   for k0 in range(0, t.depth, DEPTH_CHUNK)]
    col_block = -(-col_tiles // -(-col_tiles // BLOCK_COLUMN_TILES))        # blocks of even size
    row_blocks = -(-row_tiles // max(1, BLOCK_TILE_FLOATS // (t.rows * col_block * t.width)))
    col_blocks = -(-col_tiles // col_block)
    while row_blocks < row_tiles and numel(t.batch) * row_blocks * col_blocks < MIN_TASKS:
        row_blocks += 1
    row_block = -(-row_tiles // row_blocks)
    row_blocks = -(-row_tiles // row_block)
    ldc = col_block * t.width
    ca, cb, cn = ctx.var("chunk_a"), ctx.var("chunk_b"), ctx.var("chunk_n")
    tables = [table(ca.name, [a for a, _, _ in chunks]), table(cb.name, [b for _, b, _ in chunks]),
              table(cn.name, [n for _, _, n in chunks])]
    ib, jb, iu, ju, ci, z = (ctx.var(h) for h in ("ib", "jb", "iu", "ju", "ci", "z"))
    it, jt = ctx.var("it"), ctx.var("jt")
    head = [f"const int64_t {ib.name} = {task.name} % {row_blocks}, {jb.name} = {task.name} / {row_blocks} % "
            f"{col_blocks};",
            f"const int64_t its = {row_tiles} - {ib.name} * {row_block} < {row_block} ? "
            f"{row_tiles} - {ib.name} * {row_block} : {row_block};",
            f"const int64_t jts = {col_tiles} - {jb.name} * {col_block} < {col_block} ? "
            f"{col_tiles} - {jb.name} * {col_block} : {col_block};",
            local_array("float", "sums", row_block * t.rows * ldc),
            f"for (int64_t {z.name} = 0; {z.name} < {row_block * t.rows * ldc}; ++{z.name}) sums[{z.name}] = 0;"]
    bidx = _batch_index(ctx, task, t.batch, row_blocks * col_blocks, head)
    where = [f"const int64_t {it.name} = {ib.name} * {row_block} + {iu.name}, {i0.name} = {it.name} * {t.rows};",
             f"const int64_t {jt.name} = {jb.name} * {col_block} + {ju.name}, {j0.name} = {jt.name} * {t.width};",
             f"float* const block_tile = sums + {iu.name} * {t.rows * ldc} + {ju.name} * {t.width};"]

    def add(got: int) -> list[str]:
        return [f"{t.kernel(ctx, got, accumulate=True)}({cn.name}[{ci.name}], ({t.a_at(bidx, it)} + "
                f"{ca.name}[{ci.name}]), ({t.b_at(bidx, jt)} + {cb.name}[{ci.name}]), {t.ldb}, block_tile, {ldc});"]

    def store(got: int) -> list[str]:
        return edges(j0, t.width, t.n, lambda cols: t.finish(bidx, i0, j0, got, cols, "block_tile", ldc))

    def over_tiles(body: Callable[[int], list[str]]) -> list[str]:
        inner = [f"for (int64_t {ju.name} = 0; {ju.name} < jts; ++{ju.name}) {{", *indent(where),
                 *indent(edges(i0, t.rows, t.m, body)), "}"]
        return [f"for (int64_t {iu.name} = 0; {iu.name} < its; ++{iu.name}) {{", *indent(inner), "}"]

    body = head + [f"for (int64_t {ci.name} = 0; {ci.name} < {len(chunks)}; ++{ci.name}) {{",
                   *indent(over_tiles(add)), "}"] + over_tiles(store)
    return tables + parallel_for(task, numel(t.batch) * row_blocks * col_blocks, body, work)


def _batch_index(ctx: KernelContext, task: Var, batch: tuple[int, ...], per_entry: int, head: list[str]) -> Index:
    """The batch index of a task when `per_entry` tasks cover each batch entry (its C line added to `head`)."""
    if numel(batch) <= 1:
        return tuple(Lit(0) for _ in batch)
    bq = ctx.var("b")
    head.insert(0, f"const int64_t {bq.name} = {task.name} / {per_entry};")
    return unravel(bq, batch)


def product_kernel(ctx: KernelContext, p: Product) -> list[str]:
    """The loops of a batched matrix product. With B contiguous along its columns (nn), a tile of rows x
    columns accumulates in registers over k (each A element broadcast against a vector of B); with B
    contiguous along k (nt: a transposed weight), a tile of dot products runs vectorised along k. An operand
    that is not a plain array (fused producers, odd strides) is first packed into a scratch array, as is a
    transposed B when enough rows of A reuse the copy (the nn tiles are faster). B goes into column panels
    where its rows would alias in the cache (a row stride of a multiple of 1 KiB, as 768 or 1024 floats),
    copying even a plain B when enough rows of A reuse the panels. Where this CPU has intrinsics microkernels,
    `packed_product` runs the product instead."""
    fast = packed_product(ctx, p)
    if fast is not None:
        return fast
    lines: list[str] = []
    a, b, m, k, n = p.a, p.b, p.a.rows, p.a.cols, p.b.cols
    tr, tc = nn_tile(p.acc, m, n)
    aliasing = n > tc and n * ITEM_SIZE[p.acc] % ALIASING_BYTES == 0
    if b.strides is None and not b.panel:
        packed, b = pack(ctx, b, p.acc, tc if aliasing else 0)
        lines += packed
    elif b.strides is not None:
        along_columns = n > 1 and b.strides[1] == 1
        reused = m >= PANEL_MIN_ROWS and k >= PANEL_MIN_DEPTH and n > tc and \
            b.strides[0] * ITEM_SIZE[p.acc] % ALIASING_BYTES == 0
        transposed = not along_columns and k > 1 and (b.strides[0] != 1 or m >= PANEL_MIN_ROWS and n > 1)
        if along_columns and reused or transposed:
            packed, b = pack(ctx, b, p.acc, tc if aliasing or transposed else 0)
            lines += packed
    nn = bool(b.panel) or n > 1 and b.strides[1] == 1
    if a.strides is None or not nn and k > 1 and a.strides[1] != 1:
        packed, a = pack(ctx, a, p.acc)
        lines += packed
    if not nn:
        tr, tc = min(DOT_TILE[0], m), min(DOT_TILE[1], n)
    row_tiles, col_tiles = -(-m // tr), -(-n // tc)
    t, i0, j0 = ctx.var("t"), ctx.var("i"), ctx.var("j")
    head = [f"const int64_t {i0.name} = {t.name} % {row_tiles} * {tr};",
            f"const int64_t {j0.name} = {t.name} / {row_tiles} % {col_tiles} * {tc};"]
    bidx: Index = tuple(Lit(0) for _ in p.batch)
    if numel(p.batch) > 1:
        bq = ctx.var("b")
        head.append(f"const int64_t {bq.name} = {t.name} / {row_tiles * col_tiles};")
        bidx = unravel(bq, p.batch)
    at = Tile(ctx, p, a, b, bidx, i0, j0, tc)
    tile = at.nn if nn else at.nt
    body = head + edges(i0, tr, m, lambda rows: edges(j0, tc, n, lambda cols: tile(rows, cols)))
    return lines + parallel_for(t, numel(p.batch) * row_tiles * col_tiles, body, numel(p.batch) * m * n * k)


def edges(start: Var, size: int, extent: int, tile: Callable[[int], list[str]]) -> list[str]:
    """`tile(size)`, or `tile(extent % size)` for the last, partial tile along an axis of `extent`."""
    if extent % size == 0:
        return tile(size)
    return [f"if ({start.name} + {size} <= {extent}) {{", *indent(tile(size)), "} else {",
            *indent(tile(extent % size)), "}"]


@dataclass
class Tile:
    """The code of one output tile at rows i0.. and columns j0.. of batch entry `bidx`."""

    ctx: KernelContext
    p: Product
    a: Operand
    b: Operand
    bidx: Index
    i0: Var
    j0: Var
    width: int                 # columns of a full tile

    def element(self, op: Operand, r: Expr, c: Expr) -> str:
        return self.ctx.c(op.element(broadcast_index(self.bidx, self.p.batch, op.batch), r, c))

    def finish(self, rows: int, cols: int, tile: str, stride: int | None = None) -> list[str]:
        """Hand every element of the finished `tile` array (rows x cols) to the product's store: along each
        row of the column shape in one run (a tile may span several such rows), vectorized along the columns
        (each column stores to its own elements, so an epilogue's math runs in SIMD lanes). The tile's rows
        are `stride` elements apart (default: `cols`)."""
        shape = self.p.columns or (self.b.cols,)
        step = cols if stride is None else stride
        r, c, last = self.ctx.var("r"), self.ctx.var("c"), shape[-1]
        if len(shape) == 1:
            value = Load(tile, r * step + c, self.p.acc)
            return serial_for(r, rows, serial_for(c, cols, self.p.store(self.bidx, self.i0 + r, (self.j0 + c,), value),
                                                  simd=True))
        q, rest = self.ctx.var("jq"), self.ctx.var("jr")
        valid = last if self.p.valid is None else self.p.valid
        if last % self.width == 0 and valid == last:    # tiles never cross a row
            value = Load(tile, r * step + c, self.p.acc)
            store = self.p.store(self.bidx, self.i0 + r, (*unravel(q, shape[:-1]), rest + c), value)
            return [f"const int64_t {q.name} = {self.j0.name} / {last}, {rest.name} = {self.j0.name} % {last};"] + \
                serial_for(r, rows, serial_for(c, cols, store, simd=True))
        start, run, kept = self.ctx.var("s"), self.ctx.var("len"), self.ctx.var("kept")
        value = Load(tile, r * step + start + c, self.p.acc)
        store = self.p.store(self.bidx, self.i0 + r, (*unravel(q, shape[:-1]), rest + c), value)
        j = f"({self.j0.name} + {start.name})"
        segment = [f"const int64_t {q.name} = {j} / {last}, {rest.name} = {j} % {last};",
                   f"const int64_t {run.name} = {last} - {rest.name} < {cols} - {start.name} ? "
                   f"{last} - {rest.name} : {cols} - {start.name};",
                   f"const int64_t {kept.name} = {valid} - {rest.name} < {run.name} ? {valid} - {rest.name} : "
                   f"{run.name};",
                   "#pragma omp simd",
                   f"for (int64_t {c.name} = 0; {c.name} < {kept.name}; ++{c.name}) {{", *indent(store), "}",
                   f"{start.name} += {run.name};"]
        loop = [f"for (int64_t {start.name} = 0; {start.name} < {cols}; ) {{", *indent(segment), "}"]
        return serial_for(r, rows, loop)

    def nn(self, rows: int, cols: int) -> list[str]:
        """Accumulators acc[rows][cols] over k: each A element times a contiguous vector of B's row k."""
        ct, k = self.p.acc, self.a.cols
        r, c, kk = self.ctx.var("r"), self.ctx.var("c"), self.ctx.var("k")
        if self.b.panel_at is not None:
            b = self.ctx.c(self.b.panel_at(broadcast_index(self.bidx, self.p.batch, self.b.batch), kk, self.j0, c))
        else:
            b = self.element(self.b, kk, self.j0 + c)
        update = serial_for(c, cols, [f"acc[{self.ctx.c(r * cols + c)}] += av * {b};"], simd=True)
        lines = [local_array(ct, "acc", rows * cols)] + serial_for(r, rows * cols, [f"acc[{r.name}] = 0;"])
        lines += serial_for(kk, k, serial_for(r, rows, [f"const {ct} av = {self.element(self.a, self.i0 + r, kk)};"]
                                              + update))
        return ["{"] + indent(lines + self.finish(rows, cols, "acc")) + ["}"]

    def nt(self, rows: int, cols: int) -> list[str]:
        """rows x cols dot products along k, each a vectorised reduction."""
        ct, k = self.p.acc, self.a.cols
        kk = self.ctx.var("k")
        sums = [f"s{r}_{c}" for r in range(rows) for c in range(cols)]
        body = [f"const {ct} a{r} = {self.element(self.a, self.i0 + r, kk)};" for r in range(rows)]
        body += [f"const {ct} b{c} = {self.element(self.b, kk, self.j0 + c)};" for c in range(cols)]
        body += [f"s{r}_{c} += a{r} * b{c};" for r in range(rows) for c in range(cols)]
        lines = [f"{ct} " + ", ".join(f"{s} = 0" for s in sums) + ";",
                 f"#pragma omp simd reduction(+:{', '.join(sums)})"] + serial_for(kk, k, body)
        lines.append(local_array(f"const {ct}", "tile", rows * cols, f"{{{', '.join(sums)}}}"))
        return ["{"] + indent(lines + self.finish(rows, cols, "tile")) + ["}"]
