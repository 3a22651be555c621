"""Sliding-window geometry shared by convolution and pooling templates: the Window (kernel, strides,
dilations, pads, output extents), the ranges of positions a tap covers, and their tables in generated C."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


@dataclass(frozen=True)
class Window:
    """Where a sliding window visits the spatial axes: kernel, strides, dilations, pads and output extents."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def extent(self) -> tuple[int, ...]:
        """The span of each dilated kernel axis."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))

    def windows(self, x: np.ndarray, fill: float = 0) -> np.ndarray:
        """A strided view (..., *out, *kernel) of the trailing spatial axes of x, padded with `fill`."""
        n = len(self.kernel)
        spatial = x.shape[x.ndim - n:]
        needed = [(o - 1) * s + e for o, s, e in zip(self.out, self.strides, self.extent)]
        pad = [(b, max(0, t - i - b)) for b, t, i in zip(self.pads_begin, needed, spatial)]
        if any(p for pair in pad for p in pair):
            x = np.pad(x, [(0, 0)] * (x.ndim - n) + pad, constant_values=fill)
        x = x[(Ellipsis, *(slice(0, t) for t in needed))]
        view = sliding_window_view(x, self.extent, axis=tuple(range(x.ndim - n, x.ndim)))
        steps = (*(slice(None, None, s) for s in self.strides), *(slice(None, None, d) for d in self.dilations))
        return view[(Ellipsis, *steps)]



def table(name: str, values: Sequence[int]) -> str:
    """A static C array of index constants."""
    return f"static const int64_t {name}[{max(len(values), 1)}] = {{{', '.join(str(v) for v in values) or '0'}}};"



def covered(count: int, start: int, step: int, low: int, high: int) -> tuple[int, int]:
    """The i in [0, count) with low <= start + i * step < high, as [first, last + 1); (0, 0) if there is none."""
    hits = [i for i in range(count) if low <= start + i * step < high]
    return (hits[0], hits[-1] + 1) if hits else (0, 0)



def range_tables(ranges: Sequence[tuple[int, int]]) -> list[str]:
    """lo_tab[k] and hi_tab[k]: the ranges [lo, hi) that the loop of tap k sweeps."""
    return [table("lo_tab", [a for a, _ in ranges]), table("hi_tab", [b for _, b in ranges])]



def window_reuse(window: Window, spatial: Sequence[int]) -> float:
    """Window reads per input pixel: output positions times taps over input positions (im2col's duplication)."""
    return max(math.prod(window.out) * math.prod(window.kernel) / max(math.prod(spatial), 1), 1.0)
