"""The PINs file of an issuing run: written as the cards are made, durable before they are registered.

A crash part way through a large batch must not lose the PINs of the cards it issued: the
resumed run issues only the rest, so a PIN not on disk by then is gone. Each chunk's PINs are
appended and fsynced before that chunk is registered (``issue_to_images(on_issued=...)``).
The file is CSV a spreadsheet opens as it is (quoted where needed, UTF-8 with a BOM) and no
cell runs as a formula: a holder name starting with ``=``, ``+``, ``-`` or ``@`` gets a leading
apostrophe (OWASP, CSV injection). It is created owner-only (0600) and never overwritten.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from personalization.issuing import IssuedCard
from purse.errors import UserError
from purse.files import PRIVATE, write_all

HEADER = ("number", "holder", "pin")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(cell: str) -> str:
    """``cell`` as text a spreadsheet shows and never evaluates."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


class PinsFile:
    """An open PINs file: ``append`` each chunk's cards; use it as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
        except FileExistsError:
            raise UserError(f"{self.path} already exists; PINs are written once, to a new file") from None
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {e.strerror}") from None
        self.count = 0
        self._write("\ufeff" + self._rows([HEADER]))

    def _rows(self, rows: Iterable[Iterable[str]]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return buffer.getvalue()

    def _write(self, text: str) -> None:
        try:
            write_all(self._fd, text.encode("utf-8"))
            os.fsync(self._fd)
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {e.strerror}") from None

    def append(self, cards: Iterable[IssuedCard]) -> None:
        """Write these cards' PINs and make them durable (call before the cards are registered)."""
        rows = [(c.number, inert(c.holder or ""), c.pin) for c in cards]
        if rows:
            self._write(self._rows(rows))
            self.count += len(rows)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> PinsFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
