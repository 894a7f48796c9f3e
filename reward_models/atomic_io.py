"""Writing directories and files so that a crash (even SIGKILL) never loses the previous version.

A directory is written to a hidden temporary sibling, every file in it is fsynced, and it is
renamed into place. Replacing an existing directory takes two renames (the old one aside, the new
one in); a process killed between them leaves the path missing and the previous version beside it,
so :func:`recover_directory` (called before every write and by the loaders) puts it back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_directory", "fsync_directory", "fsync_tree", "recover_directory"]


def fsync_directory(directory: str | os.PathLike) -> None:
    """Flush a directory's entries (renames, new files) to disk; best effort where the OS refuses."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root`` and every directory, so a rename publishes only data on disk."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_directory(folder)


def _old_versions(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)


def recover_directory(path: str | os.PathLike) -> bool:
    """Put back the previous version of ``path`` if a write was killed between its two renames.

    Returns:
        True when ``path`` was missing and its previous version was moved back.
    """
    target = Path(path).absolute()
    old = _old_versions(target) if not target.exists() else []
    if not old:
        return False
    os.replace(old[-1], target)
    fsync_directory(target.parent)
    return True


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on success it replaces ``path``.

    On an exception (or Ctrl-C) the temporary directory is removed and ``path`` is left as it was;
    on SIGKILL, ``path`` (or, between the renames, its previous version, see
    :func:`recover_directory`) stays loadable.
    """
    target = Path(path).absolute()
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory; choose another path or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tmp.chmod(0o755)
        yield tmp
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not target.exists():
        os.replace(tmp, target)
        fsync_directory(target.parent)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_directory(target.parent)
    shutil.rmtree(old, ignore_errors=True)
