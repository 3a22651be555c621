"""Per-kernel times of a model compiled with profile=True: one row per block (its C kernel, the operators it
fuses, milliseconds per run, share of the total, GFLOP/s), slowest first, and a rich table of them."""

from __future__ import annotations

from typing import Any, Mapping

from rich.markup import escape
from rich.table import Table

from ..codegen.program import is_native, kernel_name
from ..fusion.plan import Block
from ..runtime.compiled import CompiledModel

MAX_MEMBERS = 4          # operator types named in a fused kernel's label before "+..."


def fused_label(block: Block, limit: int = MAX_MEMBERS) -> str:
    """The block's operator types joined by '+', repeats in a row named once, e.g. "Conv+Relu" or
    "MatMul+Add+Div+Erf+... (9 ops)" for a long chain."""
    members: list[str] = []
    for op_type in block.op_types:
        if not members or members[-1] != op_type:
            members.append(op_type)
    label = "+".join(members[:limit]) + ("+..." if len(members) > limit else "")
    return label + (f" ({len(block.ops)} ops)" if len(members) != len(block.ops) or len(members) > limit else "")


def profile_rows(model: CompiledModel, feeds: Mapping[str, Any], runs: int = 10) -> list[dict[str, Any]]:
    """Mean time per run of each block over `runs` runs after one warmup run, slowest first. Each row: block
    (position), kernel (C name, or None for a numpy fallback, which is not timed), operators (label), op_types,
    nodes, method (the template's choice, if any), flops, ms (None when not timed), percent, gflops."""
    model.run(feeds)
    model.block_seconds(reset=True)
    for _ in range(runs):
        model.run(feeds)
    seconds = model.block_seconds(reset=True)
    total = sum(s for s, block in zip(seconds, model.plan.blocks) if is_native(block))
    rows = [_row(model, k, block, seconds[k] / max(runs, 1), total / max(runs, 1))
            for k, block in enumerate(model.plan.blocks)]
    return sorted(rows, key=lambda row: -1.0 if row["ms"] is None else row["ms"], reverse=True)


def _row(model: CompiledModel, k: int, block: Block, seconds: float, total: float) -> dict[str, Any]:
    """One block's row (`seconds` and `total` per run)."""
    native = is_native(block)
    flops = sum(op.flops for op in block.ops)
    return {"block": k, "kernel": kernel_name(block, k) if native else None, "operators": fused_label(block),
            "op_types": block.op_types, "nodes": [op.name for op in block.ops],
            "method": model.program.methods.get(k), "flops": flops,
            "ms": seconds * 1e3 if native else None,
            "percent": 100.0 * seconds / total if native and total > 0 else None,
            "gflops": flops / seconds / 1e9 if native and seconds > 0 else None}


def profile_table(rows: list[dict[str, Any]], runs: int, top: int | None = None) -> Table:
    """The rows as a table (the `top` slowest, the rest summed in one row), then a total row."""
    table = Table(title=f"time per kernel (mean of {runs} run(s)), slowest first", title_justify="left")
    for col in ("kernel", "operators", "ms/run", "%", "GFLOP/s"):
        table.add_column(col, justify="left" if col in ("kernel", "operators") else "right", overflow="fold")
    shown = rows if top is None else rows[:top]
    for row in shown:
        method = f" ({row['method']})" if row["method"] else ""
        table.add_row(row["kernel"] or "(numpy fallback)", escape(row["operators"] + method),
                      _ms(row["ms"]), _number(row["percent"], ".1f"), _number(row["gflops"], ".2f"))
    rest = rows[len(shown):]
    if rest:
        table.add_row(f"{len(rest)} more", "", *_totals(rest)[:2], "")
    table.add_section()
    table.add_row("total", f"{len(rows)} kernels", *_totals(rows))
    return table


def _totals(rows: list[dict[str, Any]]) -> tuple[str, str, str]:
    """ms/run, % and GFLOP/s of some rows together (the timed ones)."""
    timed = [row for row in rows if row["ms"] is not None]
    ms = sum(row["ms"] for row in timed)
    percent = sum(row["percent"] or 0.0 for row in timed)
    flops = sum(row["flops"] for row in timed)
    return _ms(ms), f"{percent:.1f}", f"{flops / ms / 1e6:.2f}" if ms > 0 else "-"


def _ms(value: float | None) -> str:
    """Milliseconds: 3 decimals from 1 ms up, 4 below (0.1 us resolution)."""
    return _number(value, ".3f" if value is not None and value >= 1 else ".4f")


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
