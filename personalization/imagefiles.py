"""Writing many virtual card images fast, durably at chunk boundaries.

``MemoryStorage.save`` fsyncs every file: right for one card, but an fsync per card
caps a batch at the disk's flush rate. A batch instead makes the whole chunk durable
with one ``syncfs`` before the registry records the cards.

A new image is created directly under its final name (``O_CREAT|O_EXCL``) and written:
one file-system operation less than a temporary name plus a rename, which is what
bounds issuing on a busy disk (docs/performance.md). A crash can then leave a short or
empty file under the final name, but only for a card whose number is still merely
*reserved*: an image counts only once the registry lists its card as issued, and
resuming the batch rewrites every reserved card's image whatever its file holds. An
image that already exists (left by such a crash) is replaced the careful way,
temporary name then rename, so the replacement is all-or-nothing too
(docs/personalization.md, "Durability trade-off").
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from pathlib import Path

from purse.files import write_all

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def write_image(path: Path, image: bytes) -> None:
    """Write the card image ``path``, without waiting for the disk.

    A new file is created under its final name; if the name is taken (a resumed batch
    meets the debris of a crash) the file is replaced atomically instead. On an error
    nothing half-written is left behind by this call: the file it created is removed.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _replace(path, image)
        return
    _write_or_remove(fd, path, image)


def _replace(path: Path, image: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    _write_or_remove(fd, tmp, image)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write_or_remove(fd: int, path: Path, image: bytes) -> None:
    """Write all of ``image`` to ``fd`` (opened on ``path``) and close it; on failure remove ``path``."""
    try:
        try:
            write_all(fd, image)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def make_durable(folder: Path) -> None:
    """Everything written under ``folder`` so far (new files, their data, renames) reaches the disk.

    ``syncfs`` flushes only the folder's file system; where it is missing, ``os.sync``
    flushes all of them, which is slower but just as safe.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
        os.fsync(fd)
    finally:
        os.close(fd)
