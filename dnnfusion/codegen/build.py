"""The C compiler driver: a toolchain (gcc with `-O3 -march=native` unless the options say otherwise), a disk cache keyed by
the source, the flags, the compiler's version and the CPU, atomic writes, a manifest per library (sha256 of the
library and of its source) checked before reuse, and loading through ctypes."""

from __future__ import annotations

import ctypes
import hashlib
import json
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..cache import atomic_path, cache_dir
from ..errors import DnnfusionError
from ..machine import machine_key

# Always on, whatever optimisation flags are chosen. (A gcc 12 miscompile that deleted calls to out-of-line blocks is
# avoided in the source, program.py's BLOCK attribute: -fno-delete-null-pointer-checks avoids it too but made
# GEMM kernels 2.7x slower.)
# `#pragma omp simd` only (-fopenmp-simd): threads come from dnnfusion's own pool (pool.c), not from OpenMP.
REQUIRED_FLAGS = ("-fopenmp-simd", "-fPIC", "-shared", "-std=gnu11")
POOL_SOURCE = Path(__file__).with_name("pool.c")
POOL_FLAGS = ("-O2", "-pthread")
# -fno-thread-jumps: gcc 12 threads jumps through the selects of a fused chain (Softplus's max(x, 0) beside the
# prelude's log1p and exp), duplicating paths until if-conversion gives up and the loop stays scalar (20x slower).
DEFAULT_OPTIMIZATION = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fno-thread-jumps")
WIDE_VECTORS = "-mprefer-vector-width=512"


class BuildError(DnnfusionError):
    """The C compiler is missing or rejected the generated source (a dnnfusion bug: please report it)."""


@dataclass(frozen=True)
class Toolchain:
    """The C compiler and its optimisation flags; REQUIRED_FLAGS are always added after them."""

    cc: str = "gcc"
    optimization: tuple[str, ...] = DEFAULT_OPTIMIZATION

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(self.optimization) + REQUIRED_FLAGS

    def for_target(self, march: str, avx512: bool = False) -> Toolchain:
        """The same toolchain building for `-march=march` (its own -march flag replaced, or one added; `native`
        leaves it as it is). With `avx512` (the target has AVX-512) gcc's vectorizer is told to prefer 512-bit
        vectors, unless the flags already say: its default 256 left fused elementwise loops, epilogues included,
        at half the width of the microkernels (EfficientNet-B0 on a Xeon, 1 thread: 14.9 -> 13.3 ms)."""
        flags = tuple(self.optimization)
        if march != "native":
            flags = tuple(f for f in flags if not f.startswith("-march=")) + (f"-march={march}",)
        if avx512 and not any(f.startswith("-mprefer-vector-width=") for f in flags):
            flags += (WIDE_VECTORS,)
        return Toolchain(self.cc, flags)


@lru_cache(maxsize=None)
def compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError) as e:
        raise BuildError(f"C compiler '{cc}' not usable ({e}); install gcc or set CC") from e


def build(source: str, toolchain: Toolchain = Toolchain(), runtime: bool = True) -> Path:
    """The shared library for `source`, compiled once per (source, flags, compiler, CPU) and cached: a cached one
    is reused only if its manifest vouches for both this source and the library's bytes, else it is discarded and
    rebuilt. With `runtime` it is linked against the thread pool library (found beside it in the cache)."""
    cc, options = toolchain.cc, toolchain.flags
    links = ()
    if runtime:
        pool = pool_library(cc)
        links = (f"-L{pool.parent}", f"-l:{pool.name}", "-Wl,-rpath,$ORIGIN", "-pthread")
    key = hashlib.sha256("\0".join([source, " ".join(options + links[1:]), compiler_version(cc),
                                    machine_key()]).encode())
    folder = cache_dir("kernels")
    library = folder / f"{key.hexdigest()[:24]}.so"
    expected = {"key": key.hexdigest(), "source_sha256": hashlib.sha256(source.encode()).hexdigest()}
    if library.exists() and _verified(library, expected):
        return library
    # Rebuilt in place by atomic renames, never removed first: another process may be linking against (the pool)
    # or loading this very file, and an identical rebuild under it is harmless where a missing file is not.
    with atomic_path(folder / f"{library.stem}.c") as tmp:
        tmp.write_text(source)
    with atomic_path(library) as tmp:
        result = subprocess.run([cc, *options, "-o", str(tmp), str(folder / f"{library.stem}.c"), *links, "-lm"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"the C compiler rejected the generated source {folder / library.stem}.c:\n"
                             + "\n".join(result.stderr.splitlines()[:20]))
    with atomic_path(manifest_path(library)) as tmp:
        tmp.write_text(json.dumps({**expected, "library_sha256": file_sha256(library)}))
    return library


def pool_library(cc: str = "gcc") -> Path:
    """The thread pool's shared library (pool.c), built once per compiler into the kernel cache, where every model
    library finds it (linked by name, found through its own directory): one pool per process, whatever the
    number of models."""
    return build(POOL_SOURCE.read_text(), Toolchain(cc, POOL_FLAGS), runtime=False)


def manifest_path(library: Path) -> Path:
    """Where the manifest of `library` lives: beside it, same stem, `.json`."""
    return library.with_suffix(".json")


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (a few MB: cheap next to a compile)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(library: Path, expected: dict[str, str]) -> bool:
    """Whether `library`'s manifest parses, names this key and source, and matches the library's bytes (so a
    truncated file or another model's library is never handed to the loader)."""
    try:
        manifest = json.loads(manifest_path(library).read_text())
        if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
            return False
        return manifest.get("library_sha256") == file_sha256(library)
    except (OSError, ValueError):
        return False


def discard(library: Path) -> None:
    """Remove a cached library and its manifest (the manifest first, so a half-done discard never vouches)."""
    for path in (manifest_path(library), library):
        path.unlink(missing_ok=True)


def load(library: Path) -> ctypes.CDLL:
    """Load a built library (its thread pool library comes with it)."""
    return ctypes.CDLL(str(library))


def build_and_load(source: str, toolchain: Toolchain = Toolchain()) -> tuple[Path, ctypes.CDLL]:
    """`build` then `load`; a library the loader rejects (corrupt in a way the manifest cannot tell, or removed
    by another process that found it without its manifest while it was being written) is discarded and rebuilt
    once, so a bad cache entry never needs deleting by hand."""
    library = build(source, toolchain)
    try:
        return library, load(library)
    except OSError:
        pass
    discard(library)
    library = build(source, toolchain)
    try:
        return library, load(library)
    except OSError as e:
        raise BuildError(f"cannot load the rebuilt library {library} ({e}); run `dnnfusion cache clear` and "
                         "retry, or report it") from e
