"""Float32 register-tile microkernels written with intrinsics, one family per vector ISA: a tile of `rows` x
`vectors` accumulators stays in registers over the whole depth, each step broadcasting one element of a packed
A column (rows interleaved) against `vectors` loads of a B row. The ISA is chosen from the build target
(this machine, or the portable level `machine.targeting` names), and each function carries its own `target` attribute, so it compiles whatever flags the user
gives; other CPUs keep the portable template in `gemm.py`."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

from ..machine import full_width_fma, native_target, target_flags


SHAPE_GAIN = 0.97     # cost, against a full tile's shape, below which another tile shape is chosen


@dataclass(frozen=True)
class Core:
    """What one step of depth of a register tile costs on a core, in vector FMAs issued: each vector load or
    broadcast, the loop's own step, and the accumulators below which the FMAs wait on each other's latency
    (None: two thirds of a full tile's)."""

    load: float
    step: float
    busy: int | None


# A core issuing one 512-bit FMA and two loads per cycle (AMD Zen 4, which runs AVX-512 as two 256-bit halves;
# also the estimate for AVX2 and for portable builds), where the shapes were first fitted.
HALF_WIDTH = Core(load=0.5, step=1.0, busy=None)
# Two 512-bit FMA units (Intel Xeon): loads bind sooner. Fitted in cache on one, 1 thread, depth 512: one vector
# wide tiles (19 x 16, 24 x 16) reach 72-77% of peak, 8-14 rows x 2 or 3 vectors 89-93%, 6 x 2 82%.
FULL_WIDTH = Core(load=2 / 1.65, step=2.0, busy=8)


@dataclass(frozen=True)
class Isa:
    """A vector ISA as the microkernels use it: C vector type and intrinsics, lanes per vector, and the tile
    of accumulators (rows x vectors) that keeps its FMA units busy without spilling."""

    name: str
    lanes: int
    vtype: str
    target: str
    prefix: str           # intrinsic prefix: _mm512 / _mm256
    rows: int             # MR: rows of a full tile
    vectors: int          # NR / lanes: vectors per row of a full tile
    registers: int        # vector registers the ISA names
    core: Core = HALF_WIDTH

    @property
    def width(self) -> int:
        """Columns of a full tile (NR)."""
        return self.lanes * self.vectors

    def max_rows(self, vectors: int) -> int:
        """Rows of the tallest tile `vectors` wide: as many accumulators as a full tile keeps."""
        return self.rows * self.vectors // vectors

    def tile_rows(self, m: int, vectors: int | None = None, step: int = 1) -> int:
        """Rows of the tiles `vectors` wide (default: a full tile's) over m rows: the height whose tiles cost
        least (`row_cost`), ties to the taller (64 rows: 11 x 5 + 9 rather than 12 x 5 + 4; 196: 11 x 17 + 9);
        with `step`, a multiple of it (0 where no multiple fits)."""
        v = self.vectors if vectors is None else vectors
        tallest = self.max_rows(v)
        if m <= tallest and m % step == 0:
            return m
        heights = [rows for rows in range(tallest, max(tallest // 2, 1) - 1, -1) if rows % step == 0]
        return min(heights, key=lambda rows: self.row_cost(m, rows, v)) if heights else 0

    def row_cost(self, m: int, rows: int, vectors: int) -> float:
        """Cost per step of depth of one column of tiles `rows` x `vectors` over m rows, in FMAs issued: per
        tile, its FMAs (at least the core's `busy` accumulators: a thinner tile leaves the FMA units waiting)
        or its loads, whichever binds, plus the loop's step."""
        core = self.core
        busy = self.max_rows(vectors) * 2 // 3 * vectors if core.busy is None else core.busy

        def tile(height: int) -> float:
            return max(max(height * vectors, busy), (height + vectors) * core.load) + core.step
        full, last = divmod(m, rows)
        return full * tile(rows) + (tile(last) if last else 0)

    def tile_shape(self, m: int, n: int, step: int = 1) -> tuple[int, int, float]:
        """(rows, vectors) of the tiles over an m x n product, and their cost in cycles per step of depth: the
        width that wastes least of the columns' last tile and the rows' (within SHAPE_GAIN, a full tile's); with
        `step`, rows a multiple of it where m has more than `step`."""
        step = step if m > step else 1

        def shape(vectors: int) -> tuple[int, int, float]:
            rows = self.tile_rows(m, vectors, step)
            if rows == 0:
                return 0, vectors, math.inf
            return rows, vectors, -(-n // (vectors * self.lanes)) * self.row_cost(m, rows, vectors)
        default = shape(min(self.vectors, -(-n // self.lanes)))
        best = min((shape(v) for v in range(1, self.vectors + 2)), key=lambda s: s[2])
        return best if best[2] < SHAPE_GAIN * default[2] else default


# Rows of B fetched ahead of the one the microkernel multiplies, into L1 (one prefetch per cache line of a row):
# a deep product's B panel streams from L2 or L3, which the hardware prefetchers alone do not keep up with.
# 128 x 3072 x 768 on an Intel Xeon (AVX-512), 1 thread: 121 GFLOP/s without, 137 at 16 rows, 141 at 32, 139 at 64.
# Only the plain (unsegmented) kernels prefetch: a segmented one's next rows lie at the next tap's offset, and
# prefetching there cost strided convolutions 10-25% (SSD head 275 -> 211 GFLOP/s, YOLO stem 108 -> 88).
PREFETCH_ROWS = 32
LINE_FLOATS = 16          # float32 values per 64-byte cache line

# 12 x 2 zmm: 24 accumulators + 2 B vectors + 1 broadcast of the 32 registers; two loads and 12 broadcasts per
# 24 FMAs. 6 x 2 ymm on AVX2: 12 accumulators of 16 registers.
ISAS = {
    "avx512": Isa("avx512", 16, "__m512", "avx512f", "_mm512", rows=12, vectors=2, registers=32),
    "avx2": Isa("avx2", 8, "__m256", "avx2,fma", "_mm256", rows=6, vectors=2, registers=16),
}


def target_isa() -> Isa | None:
    """The widest ISA of ISAS the build target runs (None: the portable template only): this machine's, or
    the one `machine.targeting` names while a portable library is generated. Its tile costs are this core's
    where the target is this machine and it has two full-width FMA units (an Intel CPU with AVX-512)."""
    return _widest_isa(target_flags(), native_target() and full_width_fma())


@functools.lru_cache(maxsize=None)
def _widest_isa(flags: frozenset[str], full_width: bool) -> Isa | None:
    if "avx512f" in flags:
        return replace(ISAS["avx512"], core=FULL_WIDTH) if full_width else ISAS["avx512"]
    if "avx2" in flags and "fma" in flags:
        return ISAS["avx2"]
    return None


def name(isa: Isa, rows: int, vectors: int, a_steps: tuple[int, int], segmented: bool = False,
         accumulate: bool = False, shift_a: bool = False, strided: bool = False) -> str:
    """The C name of the microkernel for a tile of rows x vectors reading A at `a_steps` (see `code`)."""
    return f"df_ukr_{isa.name}_{rows}x{vectors * isa.lanes}_a{a_steps[0]}x{a_steps[1]}" + \
        (("_sega" if shift_a else "_seg") if segmented else "") + ("_acc" if accumulate else "") + \
        ("_ldc" if strided else "")


def code(isa: Isa, rows: int, vectors: int, a_steps: tuple[int, int], segmented: bool = False,
         accumulate: bool = False, shift_a: bool = False, strided: bool = False) -> str:
    """`void NAME(int64_t depth, const float* a, const float* b, int64_t ldb, float* c)`: c[r][j] (row stride
    vectors * lanes) = sum over k < depth of A(r, k) * b[k * ldb + j] for r < rows, where A(r, k) is
    a[r * a_steps[0] + k * a_steps[1]]: a packed tile (1, rows), or rows of a row-major array (lda, 1). The
    steps are compile-time constants, so every broadcast addresses A at a fixed offset from one pointer.

    `segmented` adds `int64_t segments, const int64_t* offsets` after `depth`: the sum then runs over
    segments x depth, B's rows of segment s starting at b + offsets[s] (an implicit-GEMM convolution: one
    segment per tap, its rows the input channels at that tap's shift) while A runs on through all of them;
    with `shift_a` the other way round: A's columns of segment s start at a + offsets[s] (the pixels of a
    convolution's output row as A's rows, one segment per tap) while B's rows run on.
    An unsegmented kernel prefetches B PREFETCH_ROWS rows ahead.
    `accumulate` adds `int64_t ldc` after `c` and adds the sums to c[r * ldc + j] (a product whose depth is
    split into cache-sized chunks) instead of storing them at row stride vectors * lanes; `strided` adds
    `int64_t ldc` too and stores the sums at row stride ldc (a product whose result needs no epilogue)."""
    p, v, width = isa.prefix, isa.vtype, vectors * isa.lanes
    row_step, col_step = a_steps
    acc = [[f"c{r}_{j}" for j in range(vectors)] for r in range(rows)]
    extra = "int64_t segments, const int64_t* restrict offsets, " if segmented else ""
    lines = [f"static __attribute__((noinline, target(\"{isa.target}\"))) void "
             f"{name(isa, rows, vectors, a_steps, segmented, accumulate, shift_a, strided)}(int64_t depth, {extra}"
             "const float* restrict a, const float* restrict b, int64_t ldb, float* restrict c"
             f"{', int64_t ldc' if accumulate or strided else ''}) {{"]
    lines += [f"  {v} {', '.join(row)};" for row in acc]
    lines += [f"  {name_} = {p}_setzero_ps();" for row in acc for name_ in row]
    if segmented and shift_a:
        lines += ["  for (int64_t s = 0; s < segments; ++s) {",
                  "  const float* restrict bs = b + s * depth * ldb;",
                  "  const float* restrict as = a + offsets[s];"]
    elif segmented:
        lines += ["  for (int64_t s = 0; s < segments; ++s) {",
                  "  const float* restrict bs = b + offsets[s];",
                  f"  const float* restrict as = a + s * depth * {col_step};"]
    else:
        lines += ["  const float* restrict bs = b;", "  const float* restrict as = a;"]
    lines += ["  for (int64_t k = 0; k < depth; ++k) {",
              "    const float* restrict bk = bs + k * ldb;",
              f"    const float* restrict ak = as + k * {col_step};"]
    if not segmented:
        lines += [f"    _mm_prefetch((const char*)(bk + {PREFETCH_ROWS} * ldb + {line * LINE_FLOATS}), _MM_HINT_T0);"
                  for line in range(-(-width // LINE_FLOATS))]
    lines += [f"    const {v} b{j} = {p}_loadu_ps(bk + {j * isa.lanes});" for j in range(vectors)]
    for r in range(rows):
        lines.append(f"    {{ const {v} x = {p}_set1_ps(ak[{r * row_step}]);")
        lines += [f"      {acc[r][j]} = {p}_fmadd_ps(x, b{j}, {acc[r][j]});" for j in range(vectors)]
        lines.append("    }")
    lines.append("  }")
    if segmented:
        lines.append("  }")
    if accumulate:
        lines += [f"  {p}_storeu_ps(c + {r} * ldc + {j * isa.lanes}, "
                  f"{p}_add_ps({p}_loadu_ps(c + {r} * ldc + {j * isa.lanes}), {acc[r][j]}));"
                  for r in range(rows) for j in range(vectors)]
    elif strided:
        lines += [f"  {p}_storeu_ps(c + {r} * ldc + {j * isa.lanes}, {acc[r][j]});"
                  for r in range(rows) for j in range(vectors)]
    else:
        lines += [f"  {p}_storeu_ps(c + {r * width + j * isa.lanes}, {acc[r][j]});"
                  for r in range(rows) for j in range(vectors)]
    return "#include <immintrin.h>\n" + "\n".join(lines) + "\n}\n"
