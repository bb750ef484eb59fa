"""The fast verifier and the reference verifier reach the same verdict on every damaged entry.

``processing.verify`` has two implementations with one contract (its docstring). This test
damages one byte of one entry, at every offset of the 80-byte entry (hypothesis picks the
entry, the offset and the new value), and either leaves the chain as it is (an altered file)
or re-chains the batch under the terminal's log key (a terminal that signs what it was
given: only the record checks can catch it). Both verifiers must then accept the same rows
or refuse with the same message. An earlier reference read the card number one byte off;
a mutation of the card number's bytes finds that at once.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from processing.batchfile import BatchRejected, open_batch
from processing.synthetic import SynthTerminal, make_card, make_keys
from processing.verify import HeldRecord, reference_verify, verify_file
from purse.batch import ENTRY_LAYOUT, ENTRY_SIZE
from purse.records import RECORD_SIZE

NOW = 1_760_000_000
KEYS, _ = make_keys()
ENTRIES = 6
CHAIN_MAC = ENTRY_LAYOUT.at("chain_mac")


def _batch(path: Path, damage: tuple[int, int, int] | None, rechain: bool) -> Path:
    terminal = SynthTerminal(KEYS, 7, 42)
    cards = [make_card(KEYS, i) for i in range(3)]
    for card in cards:
        card.balance = 10_000
    records = [terminal.purchase(cards[i % 3], 100 + i, NOW + i) for i in range(ENTRIES)]
    if damage is not None:
        index, offset, value = damage
        entries = [bytearray(raw + mac) for raw, mac in terminal.entries]
        entries[index][offset] = value
        if rechain and offset < RECORD_SIZE:
            terminal.entries, terminal._mac = [], terminal.prev_mac
            for entry in entries:
                terminal.add(bytes(entry[:RECORD_SIZE]))
        else:
            terminal.entries = [(bytes(e[:RECORD_SIZE]), bytes(e[CHAIN_MAC])) for e in entries]
    assert len(records) == ENTRIES
    return terminal.close(path)


Verdict = tuple[list[tuple[object, ...]], list[HeldRecord]] | str  # (rows posted, records held) or the refusal


def _fast(path: Path) -> Verdict:
    held: list[HeldRecord] = []
    try:
        return [row for chunk in verify_file(open_batch(path), KEYS, held=held) for row in chunk], held
    except BatchRejected as e:
        return str(e)


def _reference(path: Path) -> Verdict:
    try:
        verified = reference_verify(path, KEYS)
    except BatchRejected as e:
        return str(e)
    return [(r.card_number, r.counter, int(r.record_type), r.amount, r.terminal_id, r.terminal_seq,
             r.time // 86400, 42, 0, 0, r.to_bytes()) for r in verified.records], verified.held


def test_both_accept_the_undamaged_batch(tmp_path: Path) -> None:
    path = _batch(tmp_path / "good.spb", None, False)
    assert _fast(path) == _reference(path)
    assert _fast(path) == (_fast(path)[0], []) and len(_fast(path)[0]) == ENTRIES


@settings(max_examples=400, deadline=None)
@given(index=st.integers(0, ENTRIES - 1), offset=st.integers(0, ENTRY_SIZE - 1), value=st.integers(0, 255),
       rechain=st.booleans())
def test_one_damaged_byte_gets_the_same_verdict_from_both(tmp_path_factory, index: int, offset: int, value: int,
                                                          rechain: bool) -> None:  # type: ignore[no-untyped-def]
    path = _batch(tmp_path_factory.mktemp("damaged") / "b.spb", (index, offset, value), rechain)
    assert _fast(path) == _reference(path)


def test_every_offset_of_the_card_number_is_read_alike(tmp_path: Path) -> None:
    """The bytes hypothesis may miss, checked one by one: each card-number nibble made non-decimal."""
    for offset in range(ENTRY_LAYOUT.offset["card_number"], ENTRY_LAYOUT.offset["counter"]):
        path = _batch(tmp_path / f"n{offset}.spb", (2, offset, 0xAB), True)
        fast = _fast(path)
        assert fast == _reference(path)
        assert isinstance(fast, str) and "is not decimal" in fast


def test_a_record_with_a_bad_certificate_is_held_alike_and_the_rest_kept(tmp_path: Path) -> None:
    """Re-chained by the terminal (chain and batch MAC verify), one certificate byte altered:
    both hold that one record, with its index and bytes, and keep the other five."""
    certificate = ENTRY_LAYOUT.offset["certificate"]
    path = _batch(tmp_path / "b.spb", (3, certificate, 0x00), True)
    fast = _fast(path)
    assert fast == _reference(path)
    assert not isinstance(fast, str)
    rows, held = fast
    assert len(rows) == ENTRIES - 1 and [h.index for h in held] == [4]
    assert "the card certificate does not verify" in held[0].reason()
