"""Synthetic card histories written as real batch files, for benchmarks, demos and tests.

Every record carries a real certificate under the card's diversified TXN key and a real
chain MAC under the terminal's log key, computed directly with ``purse.crypto`` (a
million records in seconds, where driving the card applet would take an hour). The
files are byte for byte what ``purse.terminal.Terminal.export_batch`` writes, so
processing cannot tell them apart; tests/test_processing_parse.py checks one against
the construct definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from processing.keys import ProcessingKeys
from purse import cardnumber, crypto
from purse.batch import FIRST_LOG_ID, FORMAT_VERSION, BatchHeader, BatchTrailer, Totals, batch_mac
from purse.protocol import AID, RecordType
from purse.records import CERTIFIED_SIZE, RECORD, money_effect

CURRENCY = 643
CREDIT_TERMINAL = 900


def make_keys(seed: bytes = b"synthetic") -> tuple[ProcessingKeys, dict[int, bytes]]:
    """Processing keys derived from ``seed``, and the TXN masters cards are made with."""
    root = crypto.cmac(bytes(16), seed)
    txn = {1: crypto.cmac(root, b"TXN")}
    return ProcessingKeys(txn, {1: crypto.cmac(root, b"TERM")}), txn


@dataclass
class SynthCard:
    number: str
    uid: bytes
    txn: crypto.PrekeyedMac
    key_version: int = 1
    counter: int = 0
    balance: int = 0
    points: int = 0


def make_card(keys: ProcessingKeys, index: int, *, iin: str = "6001", key_version: int = 1) -> SynthCard:
    """Card ``index``: a Luhn-valid number and a UID derived from the index."""
    body = f"{iin}{index:011d}"
    number = body + cardnumber.calc_check_digit(body)
    uid = (0x04 << 48 | index).to_bytes(7, "big")
    master = keys.txn_masters[key_version]
    key = crypto.an10922_diversify(master, crypto.card_diversification_input(uid, AID, keys.system_identifier))
    return SynthCard(number, uid, crypto.PrekeyedMac(key), key_version)


def card_record(card: SynthCard, kind: RecordType, amount: int, terminal_id: int, terminal_seq: int, when: int,
                *, program_id: int = 0, earned: int = 0, redeemed: int = 0, prizes: int = 0,
                points_after: int | None = None) -> bytes:
    """The card's next record, certified, and the card state moved on as the applet would.

    ``points_after`` other than before + earned - redeemed: points that lapsed or went to a prize."""
    card.counter += 1
    before = card.points
    card.balance += money_effect(kind, amount)
    if program_id:
        card.points = before + earned - redeemed if points_after is None else points_after
    raw = RECORD.pack(kind, card.key_version, card.uid, bytes.fromhex(card.number), card.counter, amount,
                      card.balance, CURRENCY, program_id, before if program_id else 0,
                      card.points if program_id else 0, earned, redeemed, prizes, 0, terminal_id, terminal_seq,
                      when, 0, bytes(8))
    return raw[:CERTIFIED_SIZE] + card.txn.mac(raw[:CERTIFIED_SIZE])


@dataclass
class SynthTerminal:
    """A terminal's MAC-chained log, closed into batch files."""

    keys: ProcessingKeys
    terminal_id: int
    merchant_id: int
    log_key_version: int = 1
    seq: int = 0
    batch_seq: int = 0
    next_index: int = 1
    prev_mac: bytes = bytes(8)
    entries: list[tuple[bytes, bytes]] = field(default_factory=list)
    log_id: bytes = FIRST_LOG_ID  # another value: a log started again

    def __post_init__(self) -> None:
        key = self.keys.log_key(self.log_key_version, self.terminal_id)
        assert key is not None
        self.log_key = key
        self._chain = crypto.PrekeyedMac(key)
        self._mac = self.prev_mac

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add(self, record: bytes) -> None:
        self._mac = self._chain.mac(record + self._mac)
        self.entries.append((record, self._mac))

    def purchase(self, card: SynthCard, amount: int, when: int, **points: int) -> bytes:
        raw = card_record(card, RecordType.PURCHASE, amount, self.terminal_id, self.next_seq(), when, **points)
        self.add(raw)
        return raw

    def close(self, path: Path, created: int = 1_700_000_000) -> Path:
        """Write the pending entries as the next batch file."""
        self.batch_seq += 1
        header = BatchHeader.build(dict(
            format_version=FORMAT_VERSION, log_key_version=self.log_key_version, terminal_id=self.terminal_id,
            merchant_id=self.merchant_id, batch_seq=self.batch_seq, first_index=self.next_index,
            record_count=len(self.entries), created=created, prev_chain_mac=self.prev_mac, log_id=self.log_id,
            written_count=0))
        totals = Totals()
        with open(path, "wb") as f:
            f.write(header)
            for record, mac in self.entries:
                totals.add(record)
                f.write(record + mac)
            trailer = BatchTrailer.build(dict(record_count=len(self.entries), final_chain_mac=self._mac,
                                              batch_mac=bytes(8), **totals.__dict__))[:-8]
            f.write(trailer + batch_mac(self.log_key, header, trailer))
        self.next_index += len(self.entries)
        self.prev_mac = self._mac
        self.entries = []
        return Path(path)


def load_row(card: SynthCard, amount: int, when: int, terminal_seq: int) -> dict[str, object]:
    """A row of the issuer's ``loads`` table, as ``smartpurse load`` writes it."""
    raw = card_record(card, RecordType.LOAD, amount, CREDIT_TERMINAL, terminal_seq, when)
    return {"card_number": card.number, "counter": card.counter, "amount": amount, "balance_after": card.balance,
            "terminal_id": CREDIT_TERMINAL, "terminal_seq": terminal_seq, "time": when, "record": raw}
