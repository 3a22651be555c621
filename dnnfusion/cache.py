"""The user cache directory (zoo exports, the profile DB and built kernels), kept private to its owner, and
atomic writes into it."""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import CacheError

PRIVATE_MODE = 0o700


def cache_root() -> Path:
    """`$DNNFUSION_CACHE_DIR`, else `$XDG_CACHE_HOME/dnnfusion`, else `~/.cache/dnnfusion` (not created)."""
    root = os.environ.get("DNNFUSION_CACHE_DIR")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dnnfusion")
    return Path(root)


def current_uid() -> int | None:
    """The effective user id folders must belong to (None where the platform has no POSIX owners)."""
    return os.geteuid() if hasattr(os, "geteuid") else None


def cache_dir(*parts: str, uid: int | None = None) -> Path:
    """The cache root's sub-folder `parts`, created 0700 where missing; every folder from the root down must be
    owned by `uid` (default: the current user) and not writable by group/others, since we load code from it."""
    expected = current_uid() if uid is None else uid
    folders = [cache_root().joinpath(*parts[:k]) for k in range(len(parts) + 1)]
    for folder in folders:
        _make_private(folder)
        check_private(folder, expected)
    return folders[-1]


def _make_private(folder: Path) -> None:
    """Create `folder` and its missing parents as 0700 whatever the umask (mkdir's mode is masked by it, so chmod
    after); folders that exist are left as they are."""
    if folder.exists():
        return
    if folder.parent != folder:
        _make_private(folder.parent)
    try:
        folder.mkdir(mode=PRIVATE_MODE)
    except FileExistsError:
        return
    except OSError as e:
        raise CacheError(f"cannot create cache folder {folder} ({e.strerror}); set DNNFUSION_CACHE_DIR to a "
                         "writable private folder") from e
    os.chmod(folder, PRIVATE_MODE)


def check_private(folder: Path, uid: int | None) -> None:
    """Raise CacheError unless `folder` is a directory owned by `uid` and not writable by group or others."""
    try:
        info = os.stat(folder)
    except OSError as e:
        raise CacheError(f"cannot read cache folder {folder} ({e.strerror}); set DNNFUSION_CACHE_DIR to a "
                         "private folder") from e
    if not stat.S_ISDIR(info.st_mode):
        raise CacheError(f"cache folder {folder} is not a folder; remove it or set DNNFUSION_CACHE_DIR to a "
                         "private folder")
    if uid is not None and info.st_uid != uid:
        raise CacheError(f"cache folder {folder} is owned by uid {info.st_uid}, not by you (uid {uid}); remove it "
                         "or set DNNFUSION_CACHE_DIR to a private folder")
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheError(f"cache folder {folder} is writable by group/others (mode {mode:04o}); run "
                         f"`chmod go-w {folder}` or set DNNFUSION_CACHE_DIR to a private folder")


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` that replaces it only if the block finishes, so readers never see
    a half-written file and concurrent writers of the same content are harmless."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
