"""The fast parser agrees with the construct definition on every field; real terminal batches import."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert
from support import REPO
from support import cards as purse_env
from support.backoffice import NOW, World

from processing.batchfile import ENTRY, open_batch
from processing.importer import ImportOptions, import_batch
from processing.keys import ProcessingKeys
from processing.schema.registry import merchants, terminals
from purse.batch import ENTRY_SIZE, HEADER_SIZE, BatchEntry, parse_batch
from purse.protocol import DEFAULT_SYSTEM_IDENTIFIER, KeyRef
from purse.records import TransactionRecord

RECORD_FIELDS = ("record_type", "key_version", "uid", "card_number", "counter", "amount", "balance_after",
                 "currency", "program_id", "points_before", "points_after", "points_earned", "points_redeemed",
                 "prizes", "tier", "terminal_id", "terminal_seq", "time", "flags", "certificate")


def assert_parsers_agree(path: Path) -> int:
    data = path.read_bytes()
    ref = parse_batch(data)
    fast = open_batch(path)
    for name, value in fast.header._asdict().items():
        assert ref.header[name] == value, name
    for name, value in fast.trailer._asdict().items():
        assert ref.trailer[name] == value, name
    assert fast.header_bytes == ref.header_bytes and fast.trailer_bytes == ref.trailer_bytes
    n = 0
    for start, chunk in fast.chunks(chunk_records=3):  # small chunks: boundaries are exercised
        for i, fields in enumerate(ENTRY.iter_unpack(chunk)):
            record, chain_mac = ref.entries[start + i]
            entry = BatchEntry.parse(data[HEADER_SIZE + (start + i) * ENTRY_SIZE:][:ENTRY_SIZE])
            assert (entry.record, entry.chain_mac) == (record, chain_mac)
            rec = TransactionRecord.from_bytes(record)
            values = dict(zip(RECORD_FIELDS, fields[:20], strict=True))
            values["card_number"] = values["card_number"].hex()
            for name in RECORD_FIELDS:
                assert getattr(rec, name) == values[name], name
            assert fields[20] == chain_mac
            n += 1
    assert n == fast.header.record_count
    return n


def test_synthetic_batch_parses_alike(processing_db: World) -> None:
    w = processing_db
    t = w.terminal(7, 42, register=False)
    for i in range(10):
        t.purchase(w.card(i, load=1_000), 10 + i, NOW + i, program_id=3 if i % 2 else 0, earned=i % 2)
    assert assert_parsers_agree(t.close(w.tmp / "s.spb")) == 10


@pytest.fixture
def real_batch(tmp_path: Path, purse_issuer: purse_env.Issuer) -> Path:
    """A batch exported by the real terminal library after debits on real virtual cards."""
    card = purse_issuer.card(balance=50_000)
    terminal = purse_issuer.terminal(card, terminal_id=7, log_path=tmp_path / "t7.log")
    terminal.debit(1_250)
    terminal.debit(300)
    terminal.cancel_last()
    other = purse_issuer.card(balance=10_000, number="6001000000000024")
    terminal.transport = other
    terminal.session.transport = other
    terminal.debit(999)
    path = tmp_path / "real.spb"
    terminal.export_batch(path)
    return path


def test_real_terminal_batch_parses_alike_and_imports(processing_db: World, real_batch: Path,
                                                      purse_issuer: purse_env.Issuer) -> None:
    assert assert_parsers_agree(real_batch) == 4
    w = processing_db
    keys = ProcessingKeys(dict(purse_issuer.masters[KeyRef.TXN]), {1: purse_issuer.term_master},
                          DEFAULT_SYSTEM_IDENTIFIER)
    with w.engine.begin() as conn:
        conn.execute(insert(merchants).values(merchant_id=purse_env.MERCHANT, name="Real shop", fee_bps=100))
        conn.execute(insert(terminals).values(terminal_id=7, merchant_id=purse_env.MERCHANT, log_key_version=1))
    result = import_batch(w.engine, real_batch, keys, ImportOptions(quarantine_dir=w.tmp / "q", now=lambda: NOW))
    assert (result.status, result.accepted) == ("accepted", 4), result.reason
    # the loads happened at a desk this test did not record: their records are not in any batch, so each
    # card's first purchase leaves a gap at counter 1 (reported only after the wait)
    assert result.anomalies == []


DOC = REPO / "docs" / "batch-format.md"


@pytest.mark.parametrize(("layout", "struct_"), [("batch_header", "BatchHeader"), ("batch_entry", "BatchEntry"),
                                                 ("batch_trailer", "BatchTrailer"), ("batch_written", "BatchWritten")])
def test_batch_format_doc_matches_construct(layout: str, struct_: str) -> None:
    """docs/batch-format.md's tables give every field's offset and size as construct defines them."""
    import purse.batch

    text = DOC.read_text(encoding="utf-8").split(f"<!-- layout: {layout} -->", 1)[1]
    table = []
    for line in text.strip().splitlines()[2:]:
        if not line.startswith("| "):
            break
        table.append(line.split("|")[1:4])
    rows = table
    documented = [(int(o), int(s), f.strip()) for o, s, f in rows]
    offset, actual = 0, []
    for sub in getattr(purse.batch, struct_).subcons:
        actual.append((offset, sub.sizeof(), sub.name))
        offset += sub.sizeof()
    assert documented == actual
