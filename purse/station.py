"""A POS terminal installed in a home: its keys, its log, its verified program and hotlist.

What a terminal has installed lives next to its log (``home/terminals``) and is verified
with the issuer public key at every use, so a file edited after installation is refused,
not trusted. Installing is a library operation with the terminal's rules in it (a signed
program only; never a hotlist older than the one installed), so an embedding POS gets the
same guarantees as ``smartpurse pos``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from purse.batch import BatchSummary, export_batch
from purse.cardaccess import open_card
from purse.errors import UserError
from purse.files import read_file, write_atomic
from purse.home import Home, TerminalFiles
from purse.hotlist import Hotlist, load_hotlist
from purse.loyalty import Program, load_signed_program
from purse.rolekeys import Role, RoleKeys, open_role_keys
from purse.signing import SignatureError
from purse.terminal import Terminal
from purse.terminal_log import TerminalLog
from purse.transport import Transport

__all__ = [
    "PosStation",
    "is_signed_document",
    "SIGNED_MARK",
]

SIGNED_MARK = b'"smartpurse-signed/'


def is_signed_document(data: bytes) -> bool:
    """Whether ``data`` looks like an issuer-signed document (not whether the signature holds)."""
    return SIGNED_MARK in data[:200]


@dataclass
class PosStation:
    """One POS terminal as a home holds it: keys, log, verified program and hotlist."""

    home: Home
    files: TerminalFiles
    keys: RoleKeys

    @classmethod
    def open(cls, home: Home, terminal_id: int, passphrase: str) -> PosStation:
        """Terminal ``terminal_id`` of ``home``, with its POS key file opened with ``passphrase``.

        Raises ``UserError`` when the key file is missing or belongs to another terminal or
        role, and ``SealedFileError`` on a wrong passphrase or an altered file.
        """
        keys = open_role_keys(home, Role.POS, passphrase, terminal_id)
        return cls(home, TerminalFiles(home.terminals_dir, terminal_id), keys)

    @property
    def terminal_id(self) -> int:
        return self.files.terminal_id

    @property
    def merchant_id(self) -> int:
        assert self.keys.merchant_id is not None  # open_role_keys checked it
        return self.keys.merchant_id

    def log(self) -> TerminalLog:
        return TerminalLog(self.files.log, terminal_id=self.terminal_id, merchant_id=self.merchant_id,
                           log_key=self.keys.terminal_log_keys())

    def program(self) -> Program | None:
        """The installed loyalty program, verified now; None when the terminal runs none."""
        if not self.files.program.is_file():
            return None
        return load_signed_program(self.files.program, self.keys.issuer_public_key)[1]

    def hotlist(self) -> Hotlist:
        """The installed hotlist, verified now; an empty list (sequence 0) before the first one."""
        if not self.files.hotlist.is_file():
            return Hotlist(0, 0, 0)
        return load_hotlist(self.files.hotlist, self.keys.issuer_public_key)

    def install_program(self, source: Path) -> Program:
        """Install the signed program file ``source`` after verifying the issuer's signature."""
        data = read_file(source)
        if not is_signed_document(data):
            raise UserError(f"{source} is not a signed program: sign it first with `smartpurse program sign {source}`")
        _, program = load_signed_program(source, self.keys.issuer_public_key)
        write_atomic(self.files.program, data)
        return program

    def install_hotlist(self, source: Path) -> Hotlist:
        """Install the signed hotlist ``source``; one older than the installed list is refused (no roll-back)."""
        hotlist = load_hotlist(source, self.keys.issuer_public_key)
        current = self.hotlist()
        if hotlist.sequence < current.sequence:
            raise SignatureError(f"{source}: hotlist {hotlist.sequence} is older than the installed {current.sequence}")
        write_atomic(self.files.hotlist, read_file(source))
        return hotlist

    def terminal(self, transport: Transport) -> Terminal:
        return Terminal(transport, self.keys.sam(), self.log(), terminal_id=self.terminal_id,
                        merchant_id=self.merchant_id, hotlist=self.hotlist())

    def terminal_at(self, number: str, reader: str | None = None) -> Terminal:
        """This terminal with card ``number`` presented (its virtual image, or the card in ``reader``)."""
        return self.terminal(open_card(self.home, number, reader=reader))

    def export_batch(self, path: Path, batch_seq: int | None = None) -> BatchSummary:
        """Close every record not yet batched into the batch file ``path`` (no card needed);
        ``batch_seq``: write that closed batch again."""
        return export_batch(self.log(), path, batch_seq=batch_seq)
