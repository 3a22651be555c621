"""gcc vector-extension helpers the kernels share: a float vector type of the target's lanes, and a register
transpose of a square block of floats."""

from __future__ import annotations

from ..kir.kernel import KernelContext


def vector_type(ctx: KernelContext, lanes: int) -> str:
    """The C vector type of `lanes` floats (gcc vector extensions), declared once per program; loads through it
    need no vector alignment (the weight blob and arena lie where their callers put them)."""
    name = f"df_v{lanes}f"
    return ctx.helper(name, f"typedef float {name} __attribute__((vector_size({4 * lanes}), aligned(4)));")


def transpose_helper(ctx: KernelContext, lanes: int, rows: int | None = None) -> str:
    """A C function `(src, ld_src, dst, ld_dst)` that writes the transpose of the `rows` x lanes block of floats
    whose rows start `ld_src` apart at `src` (default: a square block; missing rows read as zeros) as lanes rows
    of lanes floats `ld_dst` apart at `dst`: log2(lanes) rounds of two-vector shuffles, each pairing rows half a
    block apart (gcc lowers them to the ISA's permutes)."""
    rows = lanes if rows is None else rows
    vtype = vector_type(ctx, lanes)
    name = f"df_transpose{lanes}" + (f"x{rows}" if rows != lanes else "")
    mask = ctx.helper(f"df_m{lanes}i", f"typedef int32_t df_m{lanes}i __attribute__((vector_size({4 * lanes})));")
    regs = [f"r{i}" for i in range(lanes)]
    code = [f"static inline void {name}(const float* restrict src, int64_t ld_src, float* restrict dst, "
            "int64_t ld_dst) {"]
    code += [f"  {vtype} {r} = " + (f"*(const {vtype}*)(src + {i} * ld_src);" if i < rows else f"({vtype}){{0}};")
             for i, r in enumerate(regs)]
    half = lanes // 2
    while half >= 1:
        low = ", ".join(str(k if not k & half else lanes + k - half) for k in range(lanes))
        high = ", ".join(str(k + half if not k & half else lanes + k) for k in range(lanes))
        for i in range(lanes):
            if not i & half:
                a, b = regs[i], regs[i + half]
                code += [f"  {{ const {vtype} lo = __builtin_shuffle({a}, {b}, ({mask}){{{low}}});",
                         f"    const {vtype} hi = __builtin_shuffle({a}, {b}, ({mask}){{{high}}});",
                         f"    {a} = lo; {b} = hi; }}"]
        half //= 2
    code += [f"  *({vtype}*)(dst + {i} * ld_dst) = {r};" for i, r in enumerate(regs)] + ["}"]
    return ctx.helper(name, "\n".join(code))
