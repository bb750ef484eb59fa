"""The import's columnar hot path (processing.columns) reads every field as construct does.

construct (purse.batch) and purse.records define the entry; numpy reads the same bytes with
hand-written offsets. These properties build arbitrary entries with the reference encoder and
check every column, every storage row, the totals and the per-day sales against the
reference parse; the COPY payload is loaded into a real PostgreSQL table and read back.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from support.postgres import pg_schema

from processing.card_days import CardDays
from processing.columns import COPY_SIGNATURE, COPY_TRAILER, EntryColumns
from processing.rows import ROW_FIELDS
from purse.batch import BatchEntry
from purse.protocol import RecordType
from purse.records import TransactionRecord

U32 = st.integers(0, 2**32 - 1)
I32 = st.integers(-(2**31), 2**31 - 1)

records = st.builds(
    TransactionRecord,
    record_type=st.sampled_from(list(RecordType)),
    key_version=st.integers(0, 255),
    uid=st.binary(min_size=7, max_size=7),
    card_number=st.text("0123456789", min_size=16, max_size=16),  # incl. numbers ending in 00 (a 0x00 byte)
    counter=U32, amount=U32, balance_after=U32,
    currency=st.integers(0, 65535), program_id=st.integers(0, 65535),
    points_before=U32, points_after=U32, points_earned=I32, points_redeemed=I32,
    prizes=st.integers(0, 255), tier=st.integers(0, 255),
    terminal_id=U32, terminal_seq=U32, time=U32,
    flags=st.integers(0, 255), certificate=st.binary(min_size=8, max_size=8),
)
chunks = st.lists(st.tuples(records, st.binary(min_size=8, max_size=8)), min_size=1, max_size=40)


def encode(entries: list[tuple[TransactionRecord, bytes]]) -> bytes:
    return b"".join(BatchEntry.build({"record": r.to_bytes(), "chain_mac": mac}) for r, mac in entries)


def reference_row(rec: TransactionRecord, raw: bytes, terminal_id: int, merchant_id: int, batch_id: int,
                  entry_id: int) -> tuple[object, ...]:
    return (rec.card_number, rec.counter, int(rec.record_type), rec.amount, terminal_id, rec.terminal_seq,
            rec.time // 86400, merchant_id, batch_id, entry_id, raw)


@settings(max_examples=150, deadline=None)
@given(chunks)
def test_columns_equal_the_construct_parse(entries: list[tuple[TransactionRecord, bytes]]) -> None:
    data = encode(entries)
    cols = EntryColumns(data, 77, 42, 5, 9)
    parsed = [TransactionRecord.from_bytes(bytes(BatchEntry.parse(data[i * 80 : (i + 1) * 80]).record))
              for i in range(len(entries))]
    assert parsed == [r for r, _ in entries]
    numbers, counters, signed, afters, programs, times = cols.walk_columns()
    assert numbers == [r.card_number for r in parsed]
    assert counters == [r.counter for r in parsed]
    assert afters == [r.balance_after for r in parsed]
    assert programs == [r.program_id for r in parsed]
    assert times == [r.time for r in parsed]
    assert signed == [r.balance_after - r.balance_before for r in parsed]  # the money the record moves
    expected_rows = [reference_row(r, r.to_bytes(), 77, 42, 5, 9) for r in parsed]
    assert cols.rows == expected_rows
    assert [cols.row(i) for i in range(len(cols))] == expected_rows
    by_kind = {k: sum(r.amount for r in parsed if r.record_type == k) for k in RecordType}
    assert cols.totals() == (by_kind[RecordType.PURCHASE], by_kind[RecordType.CANCEL], by_kind[RecordType.LOAD])
    assert cols.load_rows() == [row for row in expected_rows if row[2] == RecordType.LOAD]
    days: dict[int, list[int]] = {}
    for r in parsed:
        if r.record_type in (RecordType.PURCHASE, RecordType.CANCEL):
            d = days.setdefault(r.time // 86400, [0, 0, 0, 0])
            at = 0 if r.record_type == RecordType.PURCHASE else 2
            d[at] += 1
            d[at + 1] += r.amount
    assert cols.sales_by_day() == days
    used = CardDays()
    used.add_columns(cols)
    used.add_columns(EntryColumns(data, 77, 42, 5, 9))  # a second chunk of the same batch adds nothing new
    assert used.pairs() == {(r.time // 86400, r.card_number) for r in parsed
                            if r.record_type in (RecordType.PURCHASE, RecordType.CANCEL, RecordType.LOAD)}


def test_a_chunk_of_partial_entries_is_refused() -> None:
    with pytest.raises(ValueError, match="whole 80-byte entries"):
        EntryColumns(bytes(81), 1, 1, 1, 1)


@pytest.mark.postgres
def test_copy_payload_loads_into_postgresql_as_the_rows() -> None:
    """The prebuilt binary COPY stream is what PostgreSQL reads back as the storage rows, field by field."""
    entries = [(TransactionRecord(RecordType(1 + i % 4), 1, bytes(7), f"{6000000000000000 + i * 1_000_003:016d}",
                                  i + 1, 100 * i + 1, 5_000 - i, 978, i % 3, 0, 0, 0, 0, 0, 0, 77, 1_000 + i,
                                  1_700_000_000 + 40_000 * i), bytes([i % 256]) * 8) for i in range(300)]
    entries.append((TransactionRecord(RecordType.PURCHASE, 2, b"\xff" * 7, "9999999999999900", 2**32 - 1,
                                      2**32 - 1, 2**32 - 1, 65535, 65535, 2**32 - 1, 0, -1, -(2**31), 255, 255, 77,
                                      2**32 - 1, 2**32 - 1), b"\x00" * 8))
    cols = EntryColumns(encode(entries), 77, 2**40, 2**31 - 1, 12)
    with pg_schema("cols") as url:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE r (card_number text, counter int8, record_type int2, amount int8, terminal_id int8, "
                "terminal_seq int8, day int4, merchant_id int8, batch_id int4, entry_id int4, raw bytea)")
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cur.copy(f"COPY r ({', '.join(ROW_FIELDS)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(COPY_SIGNATURE)
                copy.write(cols.copy_rows())
                copy.write(COPY_TRAILER)
            back = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                    for row in conn.execute(text(f"SELECT {', '.join(ROW_FIELDS)} FROM r ORDER BY terminal_seq"))]
        engine.dispose()
    assert back == sorted(cols.rows, key=lambda row: row[5])
