"""Writing many virtual card images fast, durably at chunk boundaries.

``MemoryStorage.save`` fsyncs every file: right for one card, but an fsync per card
caps a batch at the disk's flush rate. A batch writes each image to a temporary name
and renames it into place (so a reader never sees half an image), then makes the
whole chunk durable with one ``syncfs`` before the registry records the cards. A crash
before that point leaves images whose numbers are still only *reserved*; resuming the
batch rewrites them (docs/personalization.md, "Durability").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def write_image(path: Path, image: bytes) -> None:
    """Create or replace ``path`` atomically (rename), without waiting for the disk."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, image)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def make_durable(folder: Path) -> None:
    """Everything written under ``folder`` so far (data and renames) reaches the disk.

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
