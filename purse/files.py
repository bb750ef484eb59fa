"""Writing a file whole or not at all: the one atomic-write helper every layer uses.

A temporary file beside the target is created with the final permissions (never wider
for a moment, so a key file is 0600 from its first byte), written in full, optionally
fsynced, then renamed over the target: a reader, a crash or a full disk sees the old
file or the new one, never a mix, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from purse.errors import UserError

PRIVATE = 0o600  # keys, PINs, card images: the owner only
PUBLIC = 0o644  # reports, batches, signed documents: anyone may read


def read_file(path: Path) -> bytes:
    """The bytes of ``path``, or one ``UserError`` line saying why they cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``: a regular file may take fewer bytes a call (a nearly full disk)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC, durable: bool = True,
                 overwrite: bool = True) -> Path:
    """Put ``data`` at ``path`` atomically, with permission bits ``mode``; returns ``path``.

    ``durable`` fsyncs the data before the rename (and the folder after it), for files whose
    loss after a crash would lose money or keys: batches, key files, PINs; a report that can
    be written again may pass ``durable=False``. ``overwrite=False`` refuses an existing file
    (a batch or a PIN file is never replaced). Failures are one ``UserError`` line.
    """
    return _replace(Path(path), lambda fd: write_all(fd, data), mode=mode, durable=durable, overwrite=overwrite)


def copy_atomic(source: Path, path: Path, *, mode: int = PUBLIC) -> Path:
    """Copy ``source`` to ``path`` the way ``write_atomic`` writes: whole, durable, ``mode`` from the start.

    Streams the file, so a large batch is never read into memory whole."""
    def fill(fd: int) -> None:
        with open(source, "rb") as src:
            while block := src.read(1 << 20):
                write_all(fd, block)

    return _replace(Path(path), fill, mode=mode, durable=True, overwrite=True)


def _replace(path: Path, fill: Callable[[int], None], *, mode: int, durable: bool, overwrite: bool) -> Path:
    """The one protocol behind both: a temporary file created ``mode``, filled, fsynced, renamed."""
    if not overwrite and path.exists():
        raise UserError(f"{path} already exists; refusing to overwrite it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            fill(fd)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)  # the umask may have narrowed it; never wider than asked
        if not overwrite and path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite it")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, FileExistsError) and e.filename is None:
            raise UserError(str(e)) from None
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    if durable:
        _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """The rename itself reaches the disk (POSIX needs the folder fsynced for that)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
