"""The keys processing verifies with: MK_TXN (card certificates) and MK_TERM (terminal logs).

Processing never signs or debits; it only recomputes MACs. Card keys are derived per
card (AN10922, as ``purse.sam.SoftwareSam.card_key``) and kept as pre-keyed CMAC
contexts: deriving costs ~10 us, MACing a record with a copied context ~0.5 us, and a
batch holds many records of few cards (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from purse import crypto
from purse.desfire.tmac import card_tmac_key, record_verifies
from purse.home import Home
from purse.protocol import AID, DEFAULT_SYSTEM_IDENTIFIER, KeyRef
from purse.records import CERTIFIED_SIZE, RECORD_LAYOUT, RecordFlag
from purse.rolekeys import Role, open_role_keys

FLAGS = RECORD_LAYOUT.offset["flags"]


@dataclass(frozen=True)
class ProcessingKeys:
    """Master keys by version; the library takes these plain so tests need no keystore."""

    txn_masters: dict[int, bytes]
    term_masters: dict[int, bytes]
    system_identifier: bytes = DEFAULT_SYSTEM_IDENTIFIER
    issuer_public_key: bytes | None = None  # raw Ed25519: verifies the loyalty programs points are replayed with

    def log_key(self, version: int, terminal_id: int) -> bytes | None:
        master = self.term_masters.get(version)
        if master is None:
            return None
        return crypto.terminal_log_key(master, terminal_id, self.system_identifier)


@dataclass
class CardMacs:
    """Pre-keyed certificate MAC contexts per (key version, UID), bounded in size."""

    keys: ProcessingKeys
    limit: int = 1_000_000
    _cache: dict[tuple[int, bytes], crypto.PrekeyedMac] = field(default_factory=dict)
    _tmac_keys: dict[tuple[int, bytes], bytes] = field(default_factory=dict)

    def get(self, version: int, uid: bytes) -> crypto.PrekeyedMac | None:
        """The card's TXN MAC context, or None when processing has no master of ``version``."""
        ctx = self._cache.get((version, uid))
        if ctx is None:
            master = self.keys.txn_masters.get(version)
            if master is None:
                return None
            key = crypto.an10922_diversify(
                master, crypto.card_diversification_input(uid, AID, self.keys.system_identifier))
            if len(self._cache) >= self.limit:
                self._cache.clear()
            ctx = self._cache[(version, uid)] = crypto.PrekeyedMac(key)
        return ctx

    def desfire_verifies(self, version: int, uid: bytes, record: bytes, written: bytes | None) -> bool | None:
        """Whether a DESFire record carries its card's Transaction MAC (rebuilt from the record and the
        batch's card write); None when processing has no MK_TXN of ``version``."""
        key = self._tmac_keys.get((version, uid))
        if key is None:
            master = self.keys.txn_masters.get(version)
            if master is None:
                return None
            if len(self._tmac_keys) >= self.limit:
                self._tmac_keys.clear()
            key = self._tmac_keys[(version, uid)] = card_tmac_key(master, uid, self.keys.system_identifier)
        return record_verifies(key, record, written)

    def verifies(self, version: int, uid: bytes, record: bytes, written: bytes | None = None) -> bool | None:
        """Whether ``record`` (72 bytes) carries its card's certificate, whichever card profile made it;
        None when processing has no MK_TXN of ``version``."""
        if record[FLAGS] & RecordFlag.DESFIRE:
            return self.desfire_verifies(version, uid, record, written)
        ctx = self.get(version, uid)
        if ctx is None:
            return None
        return crypto.macs_equal(ctx.mac(record[:CERTIFIED_SIZE]), record[CERTIFIED_SIZE:])


def load_processing_keys(home: Home, passphrase: str) -> ProcessingKeys:
    """The processing role's keys from its encrypted key file (``keys export --role processing``)."""
    role = open_role_keys(home, Role.PROCESSING, passphrase)
    return ProcessingKeys(dict(role.masters[KeyRef.TXN]), dict(role.term_masters), role.system_identifier,
                          role.issuer_public_key)
