"""The keys processing verifies with: MK_TXN (card certificates) and MK_TERM (terminal logs).

Processing never signs or debits; it only recomputes MACs. Card keys are derived per
card (AN10922, as ``purse.sam.SoftwareSam.card_key``) and kept as pre-keyed CMAC
contexts: keying a context costs ~4 us and deriving its key ~3 us one at a time (~1 us for a
chunk's new cards together, ``CardMacs.prepare``), MACing a record with a copied context ~0.5 us,
and a batch holds many records of few cards (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Iterable
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
    # (key version, UID) -> context; the verifier's loop reads it directly, ``get`` and ``prepare`` fill it
    contexts: dict[tuple[int, bytes], crypto.PrekeyedMac] = field(default_factory=dict)
    _tmac_keys: dict[tuple[int, bytes], bytes] = field(default_factory=dict)

    def get(self, version: int, uid: bytes) -> crypto.PrekeyedMac | None:
        """The card's TXN MAC context, or None when processing has no master of ``version``."""
        ctx = self.contexts.get((version, uid))
        if ctx is None:
            master = self.keys.txn_masters.get(version)
            if master is None:
                return None
            key = crypto.an10922_diversify(
                master, crypto.card_diversification_input(uid, AID, self.keys.system_identifier))
            if len(self.contexts) >= self.limit:
                self.contexts.clear()
            ctx = self.contexts[(version, uid)] = crypto.PrekeyedMac(key)
        return ctx

    def prepare(self, version: int, uids: Iterable[bytes]) -> None:
        """Key the contexts of the cards among ``uids`` not met before, deriving their keys in one pass
        (``crypto.an10922_diversify_many``): a day's batches bring tens of thousands of new cards, and
        ``get`` one at a time spent more on the Python around each derivation than on its AES."""
        master = self.keys.txn_masters.get(version)
        if master is None:
            return
        cache = self.contexts
        new = [uid for uid in set(uids) if (version, uid) not in cache]
        if not new:
            return
        if len(cache) + len(new) > self.limit:
            cache.clear()
        system = self.keys.system_identifier
        derived = crypto.an10922_diversify_many(master, [crypto.card_diversification_input(uid, AID, system)
                                                          for uid in new])
        for uid, key in zip(new, derived, strict=True):
            cache[(version, uid)] = crypto.PrekeyedMac(key)

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
