"""``smartpurse check`` reads what was imported since the last check; ``--full`` reads everything again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from support.backoffice import NOW, World, processing_home, run_cli, two_merchants_sales, world

from processing.check import check_snapshot, run_check
from processing.schema.processing import checked_entries, records, sales


def _check(w: World, full: bool = False) -> dict[str, object]:
    with check_snapshot(w.engine) as conn:
        rep = run_check(conn, full=full, prove=True)
    return {"ok": rep.ok, "failures": {f["invariant"] for f in rep.failures}, **rep.figures}


def _more_sales(w: World) -> int:
    """Another batch of terminal 8 (two purchases); how many records it brought."""
    t = w.terminal(9, 43)
    card = w.card(3, load=50_000)
    t.purchase(card, 1_000, NOW + 500)
    t.purchase(card, 2_500, NOW + 600)
    assert w.process(t.close(w.tmp / "t9.spb")).accepted == 2
    return 3  # its two purchases and the card's load


def test_a_second_check_reads_only_what_came_since_and_says_the_same(processing_db: World) -> None:
    w = processing_db
    two_merchants_sales(w)
    with w.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(records)).scalar_one()
    first = _check(w)
    assert first["ok"] and first["records_read"] == stored and first["entries_proved"] > 0
    second = _check(w)
    assert second["ok"] and second["records_read"] == 0 and second.get("entries_proved") == 0
    assert {k: second[k] for k in ("card_float", "shadow_balances", "records_net")} == \
        {k: first[k] for k in ("card_float", "shadow_balances", "records_net")}
    new = _more_sales(w)
    third = _check(w)
    assert third["ok"] and third["records_read"] == new
    full = _check(w, full=True)
    assert full["ok"] and full["records_read"] == stored + new and full["records_net"] == third["records_net"]


def test_what_came_since_is_proven_and_an_old_record_changed_is_found_by_the_full_check(processing_db: World) -> None:
    w = processing_db
    two_merchants_sales(w)
    assert _check(w)["ok"]
    _more_sales(w)
    with w.engine.begin() as conn:  # the new batch's sales row drifts from its records
        conn.execute(update(sales).where(sales.c.terminal_id == 9).values(purchase_total=sales.c.purchase_total + 1))
    drifted = _check(w)
    assert not drifted["ok"] and "sales == sum of their records" in drifted["failures"]
    assert "entries_proved" not in drifted  # nothing is proven while an invariant fails
    with w.engine.begin() as conn:
        conn.execute(update(sales).where(sales.c.terminal_id == 9).values(purchase_total=sales.c.purchase_total - 1))
        # a record proven by the first check is changed behind processing's back
        conn.execute(update(records).where(records.c.record_type == 2, records.c.amount == 777).values(amount=778))
    assert _check(w)["ok"]  # the incremental check trusts what it proved ...
    audit = _check(w, full=True)  # ... the audit does not
    assert not audit["ok"]
    assert {"proven entries unchanged", "shadow balance == sum of the card's records"} <= audit["failures"]


def test_the_cli_check_proves_once_and_full_reads_all(processing_db: World) -> None:
    w = processing_db
    two_merchants_sales(w)
    home = processing_home(w.tmp / "home", w.keys)
    outputs = []
    for args in (["check"], ["check"], ["check", "--full"]):
        proc = run_cli(home, w.url, *args)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out)["figures"])
    assert outputs[0]["records_read"] > 0 and outputs[1]["records_read"] == 0
    assert outputs[2]["records_read"] == outputs[0]["records_read"] and outputs[2]["full"] == 1
    text = run_cli(home, w.url, "check", as_json=False)
    out, _ = text.communicate(timeout=60)
    assert "read the 0 records imported since the last check (--full reads all)" in out and "all invariants hold" in out
    with w.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(checked_entries)).scalar_one() == \
            outputs[0]["entries_proved"]


@pytest.mark.postgres
def test_a_check_on_postgresql_reads_the_new_records_through_the_entry_index(tmp_path: Path) -> None:
    """Each statement of the check that reads the records to prove is planned, in the check's own transaction,
    as it runs: none may scan ``records`` (a scan made a check after an import cost every record: 19-22 s at
    2,200,000 records, 1.6 s through the index)."""
    with world("postgresql", tmp_path) as w:
        two_merchants_sales(w)
        assert _check(w)["ok"]
        _more_sales(w)
        plans: list[str] = []

        @event.listens_for(w.engine, "before_cursor_execute")
        def plan(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            if "FROM records" in statement and "entry_id = ANY" in statement and not many:
                with cursor.connection.cursor() as explain:
                    explain.execute(f"EXPLAIN {statement}", parameters)
                    plans.append("\n".join(row[0] for row in explain.fetchall()))

        try:
            after = _check(w)
        finally:
            event.remove(w.engine, "before_cursor_execute", plan)
        assert after["ok"] and after["records_read"] == 3
        assert len(plans) >= 5, plans  # the records' net, per card, per entry, the sales, the references
        assert not [p for p in plans if "Seq Scan on records" in p], plans
