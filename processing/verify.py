"""Verifying a batch: envelope (batch MAC, key versions), chain MACs, certificates, trailer.

Two implementations with one contract: ``BatchVerifier`` (the hot path: struct
parsing, one pre-keyed CMAC context per terminal and per card, chunk by chunk) and
``reference_verify`` (the slow obvious one: construct, a fresh CMAC per MAC, the whole
file in memory). Tests run both on the same good and damaged files and require the
same verdict, the same reason and the same fields. A failure raises ``BatchRejected``
naming the record (1-based, in file order) and the check that failed.

The one failure that does not reject the batch is a card certificate that does not verify
inside a chain and batch MAC that do (docs/processing.md, "Held records"): the terminal
vouches that it received exactly this record, so the batch is genuine and only that card's
record is in doubt. Both verifiers return it as a ``HeldRecord`` and go on; it still counts
in the trailer's totals, which are the terminal's account of what it sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from processing.batchfile import BatchFile, BatchRejected, open_batch, parse_header, parse_trailer
from processing.columns import CANCEL, LOAD, PURCHASE
from processing.keys import CardMacs, ProcessingKeys
from processing.rows import Row
from purse import crypto
from purse.batch import ENTRY_LAYOUT, ENTRY_SIZE, MAC_SIZE, Totals, batch_mac, parse_batch
from purse.desfire.tmac import card_tmac_key, record_verifies
from purse.protocol import AID, RecordType
from purse.records import CERTIFIED_SIZE, RECORD_LAYOUT, RECORD_SIZE, RecordFlag, TransactionRecord

# What a terminal's batch may carry: a cash-out is the desk's, recorded online at card return
# (processing.desk_returns), never carried in a batch.
RECORD_TYPES = frozenset(int(t) for t in RecordType if t != RecordType.CASH_OUT)

# What the fast path reads of each entry, by name (purse.batch.ENTRY_LAYOUT); the rest is skipped.
_VERIFIED = ENTRY_LAYOUT.sparse(("record_type", "key_version", "uid", "card_number", "counter", "amount",
                                 "terminal_id", "terminal_seq", "time", "certificate", "chain_mac"))
# ... and what it reads first, to derive the keys of a chunk's new cards together (``CardMacs.prepare``)
_KEYED = ENTRY_LAYOUT.sparse(("key_version", "uid", "flags"))
_CARD_NUMBER, _COUNTER = RECORD_LAYOUT.at("card_number"), RECORD_LAYOUT.at("counter")
_FLAGS, _DESFIRE = RECORD_LAYOUT.offset["flags"], int(RecordFlag.DESFIRE)  # a plain int: IntFlag & costs 1 us


def check_envelope(batch: BatchFile, keys: ProcessingKeys) -> bytes:
    """Key version and batch MAC; returns the terminal's log key for the chain."""
    h = batch.header
    log_key = keys.log_key(h.log_key_version, h.terminal_id)
    if log_key is None:
        raise BatchRejected("key version", f"terminal log key version {h.log_key_version} is unknown to processing "
                            f"(known: {sorted(keys.term_masters) or 'none'})")
    expected = batch_mac(log_key, batch.header_bytes, batch.trailer_bytes[:-MAC_SIZE], batch.written_bytes)
    if not crypto.macs_equal(expected, batch.trailer.batch_mac):
        raise BatchRejected("batch MAC", f"header and trailer are not MACed by terminal {h.terminal_id}'s log key "
                            "(altered header or trailer, or a wrong key)")
    return log_key


def _describe(number: str, counter: int) -> str:
    return f"card {number} counter {counter}"


@dataclass(frozen=True)
class HeldRecord:
    """A record of a genuine batch whose card certificate does not verify: not posted, flagged."""

    index: int  # 1-based, in file order
    raw: bytes  # the 72 record bytes as the terminal sent them

    @property
    def card_number(self) -> str:
        return self.raw[_CARD_NUMBER].hex()

    @property
    def counter(self) -> int:
        return int.from_bytes(self.raw[_COUNTER], "big")

    @property
    def record_type(self) -> int:
        return self.raw[RECORD_LAYOUT.offset["record_type"]]

    @property
    def amount(self) -> int:
        return int.from_bytes(self.raw[RECORD_LAYOUT.at("amount")], "big")

    def reason(self) -> str:
        version = self.raw[RECORD_LAYOUT.offset["key_version"]]
        return (f"{_describe(self.card_number, self.counter)}: the card certificate does not verify under the "
                f"card's TXN key v{version} (a damaged or forged card)")


@dataclass
class BatchVerifier:
    """Verifies one batch's entries chunk by chunk and builds the rows to store."""

    batch: BatchFile
    log_key: bytes
    card_macs: CardMacs
    batch_id: int = 0
    entry_id: int = 0
    totals: Totals = field(default_factory=Totals)
    prev_mac: bytes = b""
    seen: int = 0
    held: list[HeldRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prev_mac = self.batch.header.prev_chain_mac
        self._chain = crypto.PrekeyedMac(self.log_key)

    def chunk(self, start: int, data: bytes, build: bool = True) -> list[Row]:
        """Verify entries ``start``.. in ``data``; their storage rows (``StoredRow`` order; none unless ``build``)."""
        if start != self.seen:
            raise ValueError("chunks must be verified in file order")
        rows: list[Row] = []
        append = rows.append
        eq = hmac.compare_digest
        chain = self._chain.mac
        card_mac = self.card_macs.get
        prev = self.prev_mac
        h = self.batch.header
        terminal_id, merchant_id, batch_id, entry_id = h.terminal_id, h.merchant_id, self.batch_id, self.entry_id
        t = self.totals
        written = self.batch.written
        desfire = self.card_macs.desfire_verifies
        contexts = self.card_macs.contexts
        prepared = False
        pos = 0
        for i, (kind, version, uid, bcd, counter, amount, terminal, seq, when, certificate,
                chain_mac) in enumerate(_VERIFIED.iter_unpack(data), start + 1):
            raw = data[pos : pos + RECORD_SIZE]
            pos += ENTRY_SIZE
            if not eq(chain(raw + prev), chain_mac):
                raise BatchRejected("chain MAC", "does not verify under the terminal log key "
                                    "(record altered, dropped, inserted or reordered)", i)
            prev = chain_mac
            number = bcd.hex()
            if not number.isdigit():
                raise BatchRejected("record", f"card number {number} is not decimal", i)
            if kind not in RECORD_TYPES:
                raise BatchRejected("record", f"unknown record type {kind} ({_describe(number, counter)})", i)
            if terminal != terminal_id:
                raise BatchRejected("record", f"{_describe(number, counter)} was made at terminal {terminal}, "
                                    f"not at this batch's terminal {terminal_id}", i)
            if raw[_FLAGS] & _DESFIRE:  # a DESFire card's record: its certificate is the Transaction MAC
                verifies = desfire(version, uid, raw, written.get(i - 1))
            else:
                ctx = contexts.get((version, uid))
                if ctx is None:
                    if not prepared:  # the first card of the chunk met for the first time: key the rest's too
                        self._prepare_keys(data[pos - ENTRY_SIZE :])
                        prepared = True
                    ctx = card_mac(version, uid)
                verifies = None if ctx is None else eq(ctx.mac(raw[:CERTIFIED_SIZE]), certificate)
            if verifies is None:
                raise BatchRejected("key version", f"{_describe(number, counter)}: card key version {version} "
                                    "is unknown to processing", i)
            if not verifies:
                self.held.append(HeldRecord(i, raw))
            elif build:
                append((number, counter, kind, amount, terminal_id, seq, when // 86400, merchant_id, batch_id,
                        entry_id, raw))
            if kind == PURCHASE:
                t.purchase_count += 1
                t.purchase_total += amount
            elif kind == CANCEL:
                t.cancel_count += 1
                t.cancel_total += amount
            elif kind == LOAD:
                t.load_count += 1
                t.load_total += amount
            else:
                t.block_count += 1
        self.prev_mac = prev
        self.seen = start + len(data) // ENTRY_SIZE
        return rows

    def _prepare_keys(self, data: bytes) -> None:
        """The certificate keys of the cards of these entries, derived together for those not met before
        (a DESFire card's records are verified with another key, ``CardMacs.desfire_verifies``)."""
        by_version: dict[int, set[bytes]] = {}
        for version, uid, flags in _KEYED.iter_unpack(data):
            if not flags & _DESFIRE:
                by_version.setdefault(version, set()).add(uid)
        for version, uids in by_version.items():
            self.card_macs.prepare(version, uids)

    def finish(self) -> None:
        """Trailer checks, once every entry has been verified."""
        tr = self.batch.trailer
        if self.seen != self.batch.header.record_count:
            raise BatchRejected("structure", f"{self.seen} records read, header announces "
                                f"{self.batch.header.record_count}")
        if not crypto.macs_equal(self.prev_mac, tr.final_chain_mac):
            raise BatchRejected("trailer", "final chain MAC is not the last record's chain MAC (truncated batch)")
        for name, value in self.totals.__dict__.items():
            announced = getattr(tr, name)
            if announced != value:
                raise BatchRejected("trailer", f"{name.replace('_', ' ')} is {announced} in the trailer, "
                                    f"the records give {value}")


def verify_file(batch: BatchFile, keys: ProcessingKeys, card_macs: CardMacs | None = None,
                held: list[HeldRecord] | None = None) -> Iterable[list[Row]]:
    """Verify a whole batch without storing it (used by tests and the benchmark); the records
    held (``HeldRecord``) are added to ``held`` once the batch verified."""
    verifier = BatchVerifier(batch, check_envelope(batch, keys), card_macs or CardMacs(keys))
    for start, data in batch.chunks():
        yield verifier.chunk(start, data)
    verifier.finish()
    if held is not None:
        held.extend(verifier.held)


@dataclass(frozen=True)
class Verified:
    """What ``reference_verify`` found in a genuine batch: the records to post, and the ones held."""

    records: list[TransactionRecord]
    held: list[HeldRecord]


def reference_verify(path: Path, keys: ProcessingKeys) -> Verified:
    """The slow, obvious verification the fast one is tested against."""
    open_batch(Path(path))  # the structural verdicts and messages are shared with the fast path
    data = Path(path).read_bytes()
    parsed = parse_batch(data)
    header, trailer = parse_header(parsed.header_bytes), parse_trailer(parsed.trailer_bytes)
    master = keys.term_masters.get(header.log_key_version)
    if master is None:
        raise BatchRejected("key version", f"terminal log key version {header.log_key_version} is unknown to "
                            f"processing (known: {sorted(keys.term_masters) or 'none'})")
    log_key = crypto.terminal_log_key(master, header.terminal_id, keys.system_identifier)
    if not crypto.macs_equal(crypto.mac8(log_key, parsed.header_bytes + parsed.written_bytes
                                         + parsed.trailer_bytes[:-MAC_SIZE]), trailer.batch_mac):
        raise BatchRejected("batch MAC", f"header and trailer are not MACed by terminal {header.terminal_id}'s "
                            "log key (altered header or trailer, or a wrong key)")
    prev = header.prev_chain_mac
    out: list[TransactionRecord] = []
    held: list[HeldRecord] = []
    totals = Totals()
    for i, (raw, chain_mac) in enumerate(parsed.entries, 1):
        if not crypto.macs_equal(crypto.mac8(log_key, raw + prev), chain_mac):
            raise BatchRejected("chain MAC", "does not verify under the terminal log key "
                                "(record altered, dropped, inserted or reordered)", i)
        prev = chain_mac
        number = raw[_CARD_NUMBER].hex()
        if not number.isdigit():
            raise BatchRejected("record", f"card number {number} is not decimal", i)
        kind = raw[RECORD_LAYOUT.offset["record_type"]]
        try:
            rec = TransactionRecord.from_bytes(raw)
            if kind not in RECORD_TYPES:
                raise ValueError("not a batch's record type")
        except ValueError:
            counter = int.from_bytes(raw[_COUNTER], "big")
            raise BatchRejected("record", f"unknown record type {kind} ({_describe(number, counter)})", i) from None
        if rec.terminal_id != header.terminal_id:
            raise BatchRejected("record", f"{_describe(rec.card_number, rec.counter)} was made at terminal "
                                f"{rec.terminal_id}, not at this batch's terminal {header.terminal_id}", i)
        txn_master = keys.txn_masters.get(rec.key_version)
        if txn_master is None:
            raise BatchRejected("key version", f"{_describe(rec.card_number, rec.counter)}: card key version "
                                f"{rec.key_version} is unknown to processing", i)
        if rec.flags & RecordFlag.DESFIRE:
            tmac_key = card_tmac_key(txn_master, rec.uid, keys.system_identifier)
            genuine = record_verifies(tmac_key, raw, parsed.written.get(i - 1))
        else:
            card_key = crypto.an10922_diversify(
                txn_master, crypto.card_diversification_input(rec.uid, AID, keys.system_identifier))
            genuine = crypto.macs_equal(crypto.mac8(card_key, rec.certified_bytes()), rec.certificate)
        if genuine:
            out.append(rec)
        else:
            held.append(HeldRecord(i, raw))
        totals.add(raw)
    if not crypto.macs_equal(prev, trailer.final_chain_mac):
        raise BatchRejected("trailer", "final chain MAC is not the last record's chain MAC (truncated batch)")
    for name, value in totals.__dict__.items():
        if getattr(trailer, name) != value:
            raise BatchRejected("trailer", f"{name.replace('_', ' ')} is {getattr(trailer, name)} in the trailer, "
                                f"the records give {value}")
    return Verified(out, held)
