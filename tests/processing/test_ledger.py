"""The ledger: balanced entries, money conserved, check finds corruption, settlement, transfers."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import delete, func, insert, select, update
from support.backoffice import DAY, NOW, World, two_merchants_sales

from processing import ledger, synthetic
from processing.check import run_check
from processing.desk_posting import post_desk_records
from processing.keys import CardMacs
from processing.schema.loads import loads
from processing.schema.processing import anomalies, card_accounts, postings, records, sales, settlements
from processing.schema.registry import card_transfers
from processing.settlement import fee_for, settle
from processing.synthetic import card_record
from processing.transfers import post_due_transfers
from purse.protocol import RecordType


def test_money_conserved_through_loads_sales_cancels_and_reimports(processing_db: World) -> None:
    """Invariant 1 over a random history, batches imported in random order, some twice."""
    w = processing_db
    rng = random.Random(5)
    w.merchant(42)
    w.merchant(43)
    terms = [w.terminal(7, 42), w.terminal(8, 43)]
    cards = [w.card(i, load=5_000) for i in range(6)]
    loaded, spent, cancelled = 6 * 5_000, 0, 0
    files = []
    for step in range(60):
        card = rng.choice(cards)
        t = rng.choice(terms)
        if step % 10 == 9:
            w.load(card, 1_000, NOW + step)
            loaded += 1_000
        elif card.balance >= 300:
            amount = rng.randint(1, 300)
            t.purchase(card, amount, NOW + step)
            spent += amount
            if rng.random() < 0.2:
                t.add(card_record(card, RecordType.CANCEL, amount, t.terminal_id, t.next_seq(), NOW + step))
                cancelled += amount
        if step % 15 == 14:
            files += [t.close(w.tmp / f"{t.terminal_id}-{t.batch_seq + 1}.spb") for t in terms if t.entries]
    files += [t.close(w.tmp / f"{t.terminal_id}-{t.batch_seq + 1}.spb") for t in terms if t.entries]
    for path in rng.sample(files, len(files)) + files[:3]:
        assert w.process(path).status in ("accepted", "duplicate")
    expected = loaded - spent + cancelled
    assert expected == sum(c.balance for c in cards)
    with w.engine.connect() as conn:
        rep = run_check(conn)
        assert rep.ok, rep.failures
        assert rep.figures["card_float"] == rep.figures["shadow_balances"] == rep.figures["records_net"] == expected
        assert rep.figures["debits"] == rep.figures["credits"]


@pytest.mark.parametrize("corruption", ["shadow", "record_amount", "posting", "double_post", "unbalanced",
                                        "sales_total", "sales_missing", "sales_stray"])
def test_check_fails_with_evidence_when_a_row_is_corrupted(processing_db: World, corruption: str) -> None:
    w = processing_db
    two_merchants_sales(w)
    with w.engine.connect() as conn:
        assert run_check(conn).ok
    with w.engine.begin() as conn:
        if corruption == "shadow":
            conn.execute(update(card_accounts).values(balance=card_accounts.c.balance + 1)
                         .where(card_accounts.c.card_number == conn.execute(
                             select(func.min(card_accounts.c.card_number))).scalar_one()))
        elif corruption == "record_amount":
            conn.execute(update(records).where(records.c.record_type == 2, records.c.amount == 777)
                         .values(amount=778))
        elif corruption == "posting":
            pid = conn.execute(select(func.max(postings.c.id))).scalar_one()
            row = conn.execute(select(postings).where(postings.c.id == pid)).one()
            conn.execute(update(postings).where(postings.c.id == pid).values(
                debit=row.debit + 5 if row.debit else 0, credit=row.credit + 5 if row.credit else 0))
        elif corruption == "double_post":  # a record's amount posted a second time by an entry of its own
            entry = ledger.open_entry(conn, "batch", "bogus", dt.date(2023, 11, 14))
            ledger.post(conn, entry, [(ledger.CARD_FLOAT, 777), (ledger.merchant_payable(43), -777)])
        elif corruption == "unbalanced":
            conn.execute(insert(postings).values(entry_id=1, account_id=1, debit=1, credit=0))
        elif corruption == "sales_total":  # the aggregate drifts from its records (and from the payable)
            conn.execute(update(sales).where(sales.c.merchant_id == 43).values(purchase_total=778))
        elif corruption == "sales_missing":
            conn.execute(delete(sales).where(sales.c.merchant_id == 43))
        elif corruption == "sales_stray":  # a day of sales no record stands behind
            conn.execute(insert(sales).values(batch_id=1, day=1, merchant_id=42, terminal_id=7, purchase_count=1,
                                              purchase_total=10, cancel_count=0, cancel_total=0))
    with w.engine.connect() as conn:
        rep = run_check(conn)
    assert not rep.ok
    names = {f["invariant"] for f in rep.failures}
    expected = {
        "shadow": {"card float == sum of shadow balances", "shadow balance == sum of the card's records"},
        "record_amount": {"shadow balance == sum of the card's records", "every record posted once",
                          "sales == sum of their records"},
        "posting": {"debits == credits", "every entry balanced"},
        "double_post": {"card float == sum of shadow balances", "every record posted once",
                        "merchant payable == unsettled sales"},
        "unbalanced": {"debits == credits", "every entry balanced"},
        "sales_total": {"sales == sum of their records", "merchant payable == unsettled sales"},
        "sales_missing": {"sales == sum of their records", "merchant payable == unsettled sales"},
        "sales_stray": {"sales == sum of their records", "merchant payable == unsettled sales"},
    }[corruption]
    assert expected <= names, rep.failures
    assert all(f["evidence"] is not None for f in rep.failures)


def test_settlement_statements_and_entries(processing_db: World) -> None:
    w = processing_db
    two_merchants_sales(w)
    until = dt.date(2023, 11, 15)  # NOW is 2023-11-14 22:13 UTC; NOW + 2 days is the 16th
    statements = {s.merchant_id: s for s in settle(w.engine, until)}
    s42 = statements[42]
    assert (s42.purchase_count, s42.gross, s42.cancel_count, s42.cancellations) == (2, 15_033, 1, 5_033)
    assert s42.fee == fee_for(10_000, 150) == 150 and s42.net == 9_850
    assert (statements[43].gross, statements[43].fee, statements[43].net) == (777, 0, 777)
    assert settle(w.engine, until) == []  # nothing twice
    with w.engine.connect() as conn:
        assert ledger.balance(conn, ledger.BANK) == -(9_850 + 777)
        assert ledger.balance(conn, ledger.FEE_INCOME) == -150
        assert ledger.balance(conn, ledger.merchant_payable(42)) == -2_000  # the later day, still owed
        assert run_check(conn).ok
        assert conn.execute(select(func.count()).select_from(settlements)).scalar_one() == 2
        stamped = conn.execute(select(sales.c.merchant_id, sales.c.settlement_id)
                               .order_by(sales.c.batch_id, sales.c.day)).all()
        assert stamped == [(42, s42.settlement_id), (42, None), (43, statements[43].settlement_id)]


def test_fee_rounds_half_up() -> None:
    assert fee_for(10_000, 150) == 150
    assert fee_for(33, 150) == 0  # 0.495
    assert fee_for(34, 150) == 1  # 0.51
    assert fee_for(-34, 150) == -1


def test_replacement_transfer_waits_for_the_old_cards_batches(processing_db: World) -> None:
    w = processing_db
    w.merchant(42)
    t = w.terminal(7, 42)
    old, new = w.card(1, load=10_000), w.card(2)
    w.register_card(old, blocked_at=NOW + 500)
    w.register_card(new)
    t.purchase(old, 1_500, NOW + 100, program_id=5, earned=15)  # spent before the block; batch still out
    with w.engine.begin() as conn:
        conn.execute(insert(card_transfers).values(from_number=old.number, to_number=new.number, reason="damaged",
                                                   balance_on_card=8_500))
    with w.engine.begin() as conn:
        post_desk_records(conn, CardMacs(w.keys), now=int(w.now), gap_seconds=w.options().gap_seconds)
        assert post_due_transfers(conn, NOW + DAY, DAY) == []  # shadow 10 000 != 8 500 on the chip: wait
    w.process(t.close(w.tmp / "b.spb"))
    with w.engine.begin() as conn:
        done = post_due_transfers(conn, NOW + DAY, DAY)
        assert done == [{"from": old.number, "to": new.number, "amount": 8_500, "points": 15}]
        assert post_due_transfers(conn, NOW + DAY, DAY) == []  # once
    with w.engine.connect() as conn:  # the value left card float: it is on no spendable card yet
        bal = dict(conn.execute(select(card_accounts.c.card_number, card_accounts.c.balance)).all())
        assert (bal[old.number], bal.get(new.number)) == (0, None)
        assert conn.execute(select(card_transfers.c.amount, card_transfers.c.points)).one() == (8_500, 15)
        rep = run_check(conn)
        assert rep.ok, rep.failures
        assert (rep.figures["card_float"], rep.figures["replacement_payable"]) == (0, 8_500)
    # the desk pays it onto the new chip (smartpurse load NEW --transfer): no cash, the payable goes down
    transfer_id = _transfer_id(w)
    with w.engine.begin() as conn:
        conn.execute(insert(loads).values(**synthetic.load_row(new, 8_500, NOW + DAY, 900), transfer_id=transfer_id))
    assert w.ingest_loads() == 1
    with w.engine.connect() as conn:
        bal = dict(conn.execute(select(card_accounts.c.card_number, card_accounts.c.balance)).all())
        assert (bal[old.number], bal[new.number]) == (0, 8_500) and new.balance == 8_500
        rep = run_check(conn)
        assert rep.ok, rep.failures
        assert (rep.figures["card_float"], rep.figures["replacement_payable"]) == (8_500, 0)
        assert ledger.balance(conn, ledger.CASH) == 10_000  # only the old card's load was cash


def _transfer_id(w: World) -> int:
    with w.engine.connect() as conn:
        return int(conn.execute(select(card_transfers.c.id)).scalar_one())


def test_a_transfer_load_of_the_wrong_amount_fails_the_check(processing_db: World) -> None:
    w = processing_db
    old, new = w.card(1, load=10_000), w.card(2)
    transfer_id = w.lose_card(old, new.number, new.uid)
    with w.engine.begin() as conn:
        assert post_due_transfers(conn, NOW + 2 * DAY, DAY)[0]["amount"] == 10_000
        conn.execute(insert(loads).values(**synthetic.load_row(new, 9_999, NOW + 2 * DAY, 901),
                                          transfer_id=transfer_id))
    w.ingest_loads()
    with w.engine.connect() as conn:
        rep = run_check(conn)
    assert [f["invariant"] for f in rep.failures] == ["replacement payable == transfers − their loads"]
    evidence = rep.failures[0]["evidence"]
    assert (evidence["replacement_payable"], evidence["expected"]) == (1, 1)
    assert evidence["transfer_loads"] == [{"transfer": f"card_transfers:{transfer_id}", "new_card": new.number,
                                           "amount": 10_000, "loaded_to": new.number, "loaded": 9_999}]


def test_a_pass_posts_each_desk_load_once_and_keeps_a_forged_one_unposted(processing_db: World) -> None:
    """Desk loads are posted once and flagged; one that came back in a terminal's batch first is flagged without
    a second posting; a load whose certificate fails stays unposted, said again each pass, never posted."""
    w = processing_db
    w.merchant(42)
    t = w.terminal(7, 42)
    plain, carried, forged = w.card(1, load=1_000), w.card(2), w.card(3, load=300)
    t.add(card_record(carried, RecordType.LOAD, 2_000, 7, t.next_seq(), NOW + 5))
    with w.engine.begin() as conn:
        # the desk's record of the load the terminal's batch carries, and a forged one (its certificate zeroed)
        conn.execute(insert(loads).values(card_number=carried.number, counter=carried.counter, amount=2_000,
                                          balance_after=carried.balance, terminal_id=7, terminal_seq=t.seq,
                                          time=NOW + 5, record=t.entries[-1][0]))
        raw = conn.execute(select(loads.c.record).where(loads.c.card_number == forged.number)).scalar_one()
        conn.execute(update(loads).where(loads.c.card_number == forged.number).values(record=raw[:-8] + bytes(8)))
    assert w.process(t.close(w.tmp / "b.spb"), post_desk=False).accepted == 1  # matched with the desk's record
    for posted_now in (1, 0):  # the plain load on the first pass; the carried one is stored; the forged never
        assert w.ingest_loads() == posted_now
        with w.engine.connect() as conn:
            flags = {n: bool(p) for n, p in conn.execute(select(loads.c.card_number, loads.c.posted))}
            assert flags == {plain.number: True, carried.number: True, forged.number: False}
            kinds = [k for (k,) in conn.execute(select(anomalies.c.kind))]
            assert kinds.count("bad_load_certificate") == 1
            assert ledger.card_float(conn) == 3_000 and ledger.balance(conn, ledger.CASH) == 3_000
