"""The static memory plan: every intermediate that crosses a block boundary (or a kernel's block-local result)
gets an offset in one arena, from its lifetime over the block schedule; buffers whose lifetimes do not overlap
share bytes. Largest first, lowest fitting offset (a greedy plan that is tight on real networks)."""

from __future__ import annotations

from dataclasses import dataclass

ALIGN = 64


@dataclass(frozen=True)
class Interval:
    key: int            # id of the value
    size: int           # bytes
    first: int          # block index where it is written
    last: int           # block index of its last reader


def plan_arena(intervals: list[Interval]) -> tuple[dict[int, int], int]:
    """Offsets by key, and the arena size in bytes."""
    placed: list[tuple[int, int, Interval]] = []          # (offset, end, interval)
    offsets: dict[int, int] = {}
    for item in sorted(intervals, key=lambda i: (-i.size, i.first)):
        size = -(-max(item.size, 1) // ALIGN) * ALIGN
        busy = sorted((o, e) for o, e, other in placed if other.first <= item.last and item.first <= other.last)
        offset = 0
        for start, end in busy:
            if offset + size <= start:
                break
            offset = max(offset, end)
        offsets[item.key] = offset
        placed.append((offset, offset + size, item))
    return offsets, max((e for _, e, _ in placed), default=0)
