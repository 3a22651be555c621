"""What running generated code needs and nothing more: a pool of zeroed arenas (one per concurrent caller) and
the one-call path that computes every output of a model into fresh arrays. Shared by `CompiledModel` and by a
saved artifact loaded without the compiler (`artifact.py`)."""

from __future__ import annotations

import ctypes
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from ..machine import l3_bytes

ENTRY_ARGTYPES = [ctypes.c_void_p] * 4 + [ctypes.c_int]
Layout = tuple[str, tuple[int, ...], np.dtype]          # an output's name, shape and dtype


def bind_entry(function: Any) -> Any:
    """A segment's entry point (`int f(arena, weights, inputs, outputs, threads)`) with its C signature set."""
    function.argtypes, function.restype = ENTRY_ARGTYPES, ctypes.c_int
    return function


def pool_waker(library: Any, threads: int, parallel: bool = True) -> Any:
    """The thread pool's `df_pool_wake` for a model that runs parallel loops on several threads, to call as a run
    starts: the helpers, asleep since the last run, wake while the inputs are checked and prepared instead of in
    the first kernel (EfficientNet-B0's 1152-channel 5 x 5 depthwise alone, AMD EPYC, 2 threads: 0.058 -> 0.051
    ms). None where there is nothing to wake, or the library's pool predates the call (an older artifact)."""
    if library is None or threads <= 1 or not parallel:
        return None
    wake = getattr(library, "df_pool_wake", None)
    if wake is not None:
        wake.argtypes, wake.restype = [], None
    return wake


class ArenaPool:
    """Zeroed arenas of `nbytes`, each lent to one running call at a time and kept for reuse."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(nbytes, 64)
        self._free = [self._new()]
        self._lock = threading.Lock()

    def _new(self) -> np.ndarray:
        return np.zeros(self.nbytes, np.uint8)

    @contextmanager
    def lend(self) -> Iterator[np.ndarray]:
        """An arena no other running call uses: a pooled one, or a new one when every pooled arena is busy."""
        with self._lock:
            arena = self._free.pop() if self._free else None
        arena = arena if arena is not None else self._new()
        try:
            yield arena
        finally:
            with self._lock:
                self._free.append(arena)


RECYCLED_SETS = 2          # buffers kept: a loop `y = model.run(x)` still holds the last run's while the next runs
ALIGN = 64


def recycle_bytes() -> int:
    """Outputs of more bytes than this in all are written into recycled buffers (`OutputBuffers`): the
    last-level cache. A fresh array is mapped from the kernel on every run, each page faulted in and zeroed
    first; beyond the cache that is pure cost (C3D's stem, 51 MB of output, AMD EPYC Zen 4 with 32 MiB of L3,
    1 thread: 29.0 ms, clear_page a third of it, 23.2 recycled), while within it the zeroing leaves the lines
    in cache for the kernel's stores (U-Net's 2 x 2 up-convolution, 16.8 MB: 14.4 ms fresh, 15.2 recycled)."""
    return l3_bytes()


class OutputBuffers:
    """Buffers for one call's outputs, each set one allocation, reused once no array handed out of it is alive:
    numpy views keep their owner alive, so the owner's reference count tells whether any output (or any view
    the caller took of one) is still held. A caller that keeps its outputs gets fresh buffers."""

    def __init__(self, outputs: Sequence[Layout]) -> None:
        self.places, total = [], 0                 # (name, shape, dtype, byte offset) per output
        for name, shape, dtype in outputs:
            self.places.append((name, tuple(shape), np.dtype(dtype), total))
            total += -(-int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize // ALIGN) * ALIGN
        self.nbytes = total
        self._sets: list[tuple[np.ndarray, int]] = []     # (buffer, its first aligned byte)
        self._lock = threading.Lock()

    def take(self) -> dict[str, np.ndarray]:
        """Arrays for every output: views of an idle buffer set, or of a new one (kept while fewer than
        RECYCLED_SETS are)."""
        with self._lock:
            found = next((s for s in self._sets if sys.getrefcount(s[0]) == 2), None)  # its tuple, the arg
            if found is None:
                owner = np.empty(self.nbytes + ALIGN, np.uint8)
                found = (owner, -owner.ctypes.data % ALIGN)
                if len(self._sets) < RECYCLED_SETS:
                    self._sets.append(found)
            owner, start = found
            return {name: np.ndarray(shape, dtype, owner, start + offset) for name, shape, dtype, offset in self.places}


class DirectCall:
    """One native call that computes every output into fresh arrays (the common case): recycled buffers where
    the outputs are large (`OutputBuffers`), else new arrays."""

    def __init__(self, entry: Any, arenas: ArenaPool, weights_address: int, outputs: Sequence[Layout]) -> None:
        self.entry, self.arenas, self.weights_address = entry, arenas, weights_address
        self.outputs = list(outputs)
        buffers = OutputBuffers(self.outputs)
        self.buffers = buffers if buffers.nbytes > recycle_bytes() else None

    def __call__(self, arrays: Sequence[np.ndarray], threads: int) -> dict[str, np.ndarray]:
        """Outputs by name for C-contiguous input arrays in the model's input order."""
        outputs = self.buffers.take() if self.buffers is not None else \
            {name: np.empty(shape, dtype) for name, shape, dtype in self.outputs}
        inputs_ptr = (ctypes.c_void_p * max(len(arrays), 1))(*[a.ctypes.data for a in arrays])
        outputs_ptr = (ctypes.c_void_p * max(len(outputs), 1))(*[o.ctypes.data for o in outputs.values()])
        with self.arenas.lend() as arena:
            self.entry(arena.ctypes.data, self.weights_address, ctypes.addressof(inputs_ptr),
                       ctypes.addressof(outputs_ptr), threads)
        return outputs
