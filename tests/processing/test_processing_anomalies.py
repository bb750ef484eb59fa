"""Reconciliation: every anomaly of a batch reported at once, with evidence, recorded once."""

from __future__ import annotations

from sqlalchemy import func, select
from support.backoffice import DAY, NOW, World

from processing import ledger
from processing.check import run_check
from processing.schema.processing import anomalies, card_accounts
from processing.synthetic import card_record
from purse.protocol import RecordType


def test_all_anomalies_of_a_batch_at_once(import_world: World) -> None:
    w = import_world
    w.merchant(42)
    t7, t8 = w.terminal(7, 42), w.terminal(8, 42)
    clone, chain, roll, hot, pts, gap, fresh = (w.card(i, load=10_000) for i in range(1, 8))
    w.register_card(hot, blocked_at=NOW + 100)

    # batch 1 of terminal 7: the clone's genuine counter 2
    t7.purchase(clone, 100, NOW + 10)
    assert w.process(t7.close(w.tmp / "t7-1.spb")).anomalies == []
    # batch 1 of terminal 8, exported, then the log restored from a backup and exported again with more
    t8.purchase(fresh, 50, NOW + 20)
    saved = (list(t8.entries), t8._mac, t8.seq)
    assert w.process(t8.close(w.tmp / "t8-1.spb")).accepted == 1
    t8.entries, t8._mac, t8.seq, t8.batch_seq, t8.next_index, t8.prev_mac = saved[0], saved[1], saved[2], 0, 1, \
        bytes(8)

    clone.counter, clone.balance = 1, 10_000  # a copy of the card from before counter 2
    t8.purchase(clone, 999, NOW + 30)  # counter 2 again, different content
    chain.balance += 500  # a card whose balance was pumped outside any record
    t8.purchase(chain, 100, NOW + 40)
    t8.purchase(roll, 100, NOW + 50)  # counter 2
    t8.purchase(roll, 100, NOW + 51)  # counter 3
    roll.counter, roll.balance = 2, 9_900
    t8.purchase(roll, 100, NOW + 52)  # counter 3 again, after 3: a rollback (and a clone of 3)
    t8.purchase(hot, 100, NOW + 200)  # blocked at NOW + 100
    t8.purchase(pts, 100, NOW + 60, program_id=5, earned=10)
    pts.points = 50  # the points slot was pumped
    t8.purchase(pts, 100, NOW + 61, program_id=5, earned=10)
    gap.counter += 1  # counter 2 happened somewhere, its batch never came
    t8.purchase(gap, 100, NOW + 70)
    t8.add(card_record(fresh, RecordType.LOAD, 700, 8, t8.next_seq(), NOW + 80))  # a load no desk recorded
    result = w.process(t8.close(w.tmp / "t8-1-again.spb"), gap_seconds=0)

    assert result.status == "accepted"
    kinds = sorted(a["kind"] for a in result.anomalies)
    assert kinds == sorted(["batch_seq_reused", "clone", "clone", "balance_out_of_chain", "counter_rollback",
                            "hotlisted_use", "points_out_of_chain", "counter_gap", "unmatched_load"]), kinds
    by_kind = {a["kind"]: a for a in result.anomalies}
    ev = by_kind["balance_out_of_chain"]["evidence"]
    assert (ev["previous_balance_after"], ev["balance_before"]) == (10_000, 10_500)
    first_clone = next(a for a in result.anomalies if a["kind"] == "clone" and a["card_number"] == clone.number)
    assert first_clone["evidence"]["stored"]["record"] != first_clone["evidence"]["received"]["record"]
    assert by_kind["counter_gap"]["detail"].startswith(f"card {gap.number}: counters 2..2 missing")
    assert by_kind["hotlisted_use"]["card_number"] == hot.number

    with w.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(anomalies)).scalar_one()
        assert stored == len(kinds)
        report = run_check(conn)
        assert report.ok, report.failures
        # the unmatched load is posted to suspense, not to cash
        assert ledger.balance(conn, ledger.LOAD_SUSPENSE) == 700
    # seen again: recorded once
    w.process(w.tmp / "t8-1-again.spb", gap_seconds=0)
    with w.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(anomalies)).scalar_one() == stored


def test_gap_waits_then_closes_when_the_late_batch_comes(import_world: World) -> None:
    w = import_world
    w.merchant(42)
    t7, t8 = w.terminal(7, 42), w.terminal(8, 42)
    card = w.card(1, load=10_000)
    t7.purchase(card, 100, NOW + 10)  # counter 2, batch arrives late
    t8.purchase(card, 200, NOW + 20)  # counter 3
    t8.purchase(card, 300, NOW + 30)  # counter 4
    late = t7.close(w.tmp / "late.spb")
    r = w.process(t8.close(w.tmp / "early.spb"), gap_seconds=3 * DAY)
    assert r.anomalies == []
    with w.engine.connect() as conn:
        acct = conn.execute(select(card_accounts).where(card_accounts.c.card_number == card.number)).one()
        assert (acct.chain_counter, acct.max_counter, acct.balance) == (1, 4, 10_000 - 500)
        assert acct.gap_since == w.now
    w.now += 4 * DAY
    r = w.process(late, gap_seconds=3 * DAY)
    assert r.anomalies == []  # the gap closed: nothing to report
    with w.engine.connect() as conn:
        acct = conn.execute(select(card_accounts).where(card_accounts.c.card_number == card.number)).one()
        assert (acct.chain_counter, acct.chain_balance, acct.gap_since) == (4, 9_400, None)
        assert run_check(conn).ok


def test_gap_reported_after_the_configured_wait(import_world: World) -> None:
    w = import_world
    w.merchant(42)
    t7, t8 = w.terminal(7, 42), w.terminal(8, 42)
    card = w.card(1, load=10_000)
    t7.purchase(card, 100, NOW + 10)  # never imported
    t8.purchase(card, 200, NOW + 20)
    assert w.process(t8.close(w.tmp / "b.spb"), gap_seconds=DAY).anomalies == []
    other = w.card(2, load=1_000)
    t8.purchase(other, 10, NOW + 30)
    w.now += 2 * DAY
    r = w.process(t8.close(w.tmp / "b2.spb"), gap_seconds=DAY)
    assert [a["kind"] for a in r.anomalies] == ["counter_gap"]
    assert r.anomalies[0]["evidence"]["missing_from"] == 2
