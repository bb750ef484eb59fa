"""``smartpurse check``: prove the books agree with themselves, or show where they do not.

The invariants (docs/design.md, "Invariants"; docs/processing.md, "Check"):
1. every journal entry balances, and all debits equal all credits;
2. the card float in the ledger equals the sum of the shadow balances, and each card's
   shadow balance equals the sum of its posted records plus its transfers;
3. every record was posted once: each journal entry that posts records moves the card
   float by exactly the sum of its records, so a record counted twice, dropped, or
   moved to another entry shows up as a difference;
4. each merchant's payable equals its posted, unsettled sales net of cancellations (the
   ``sales`` aggregates that settlement reads and stamps);
5. every record's batch and every sales row's settlement exist (the references foreign
   keys would check);
6. the ``sales`` aggregates equal their sub-ledger: for every (batch, day), the counts and
   totals of that batch's purchases and cancellations of that day, its merchant and
   terminal; and no such records without a sales row, nor a sales row without records;
7. the replacement payable equals the value of replaced cards not yet loaded onto their
   new cards, and each transfer load paid its transfer exactly;
8. the card deposits held equal the deposits posted as taken at issue less those refunded at
   card return;
9. (``full`` only) the ``points_days`` aggregates the points report reads equal the records the
   card chains walked, counted again in counter order (processing.points_days);
10. every card day of use a record says is in ``card_days``, which the cards report and the payback
   count (processing.card_days); ``full`` also proves the table holds no other day.
Each failure carries its evidence (which entry, card or merchant, expected and found).

What reads the records (invariants 2, 3, 5, 6 and 10) reads, by default, only the records of the journal
entries no check has proven yet, found through their index by entry; the proven entries are kept in
``checked_entries`` with what their records net to. A check then costs what was imported since the
last one, plus the aggregates (postings, card accounts, sales), not the whole history: records are
never changed once stored, so a proven entry stays proven. ``full`` reads every record again, as an
audit would, and also proves that no proven entry's records changed since.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Connection,
    Engine,
    Integer,
    Select,
    any_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    union,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from processing import ledger
from processing.anomalies import AnomalyKind
from processing.batchfile import BatchRejected, open_batch
from processing.card_days import USES
from processing.db import committed
from processing.points_days import recount
from processing.schema.desk import DepositMove, card_deposits, cash_outs
from processing.schema.loads import loads
from processing.schema.processing import (
    accounts,
    anomalies,
    batches,
    card_accounts,
    card_days,
    checked_cards,
    checked_entries,
    checked_sales,
    journal_entries,
    money_effect_sql,
    points_days,
    postings,
    records,
    sales,
    settlements,
    transfers_posted,
)
from processing.transfers import transfer_key
from purse.protocol import RecordType

_EVIDENCE_LIMIT = 20
_CHECK_LOCK = 0x5350_0005  # PostgreSQL advisory lock key: proving checks run one at a time


@dataclass
class CheckReport:
    ok: bool = True
    failures: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    def fail(self, invariant: str, message: str, evidence: list[dict[str, Any]] | dict[str, Any]) -> None:
        self.ok = False
        self.failures.append({"invariant": invariant, "message": message, "evidence": evidence})


def _delta() -> ColumnElement[int]:
    return money_effect_sql(records.c.record_type, records.c.amount)


@dataclass(frozen=True)
class _Scope:
    """Which records a check reads: every one (``full``), or those of the entries not proven before."""

    full: bool
    ids: tuple[int, ...] | None = None  # PostgreSQL: the entries to prove, sent as one array

    @classmethod
    def of(cls, conn: Connection, full: bool) -> _Scope:
        """On PostgreSQL the entries to prove are read first: given as an array, the planner knows how few
        they are and reads their records through the entry index (a subquery it may misjudge into a scan)."""
        if full or conn.dialect.name != "postgresql":
            return cls(full)
        return cls(full, tuple(int(row[0]) for row in conn.execute(cls(full).entries())))

    def entries(self) -> Select[Any]:
        """The journal entries to prove now."""
        je, ce = journal_entries.c, checked_entries.c
        stmt = select(je.id)
        return stmt if self.full else stmt.where(~exists().where(ce.entry_id == je.id))

    def records(self) -> ColumnElement[bool]:
        """The condition on ``records`` for the records to read now."""
        if self.full:
            return true()
        if self.ids is not None:
            return records.c.entry_id == any_(literal(list(self.ids), postgresql.ARRAY(Integer)))
        return records.c.entry_id.in_(self.entries())


@contextmanager
def _through_the_entry_index(conn: Connection, scope: _Scope) -> Iterator[None]:
    """Read the records to prove through the entry index (PostgreSQL), not by scanning the table.

    The records of the entries to prove lie together (an entry's records are stored in one go, and entry ids
    rise), so the index reaches them in a few pages; yet the planner, joining them with card accounts and
    proofs, priced a parallel scan of the whole table cheaper, and a check after an import read every
    record: 19-22 s at 2,200,000 records against 1.6 s through the index (docs/performance.md, fifth round).
    Only the queries that read the records to prove are steered; the aggregates are still read as planned."""
    if scope.ids is None:  # SQLite, or a full check, which reads every record anyway
        yield
        return
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    try:
        yield
    finally:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = on")


@contextmanager
def check_snapshot(engine: Engine) -> Iterator[Connection]:
    """One consistent view of the books for a check, in which it may record what it proved (committed at
    the end). PostgreSQL: a repeatable-read transaction, so imports committing meanwhile are not half
    seen; SQLite: the write lock, taken at once (a check reads in seconds what changed)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            with committed(conn):
                yield conn
            return
        # One check at a time, waited for before the snapshot is taken: two would prove the same entries.
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({_CHECK_LOCK})")
        conn.commit()
        try:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            conn.begin()
            with committed(conn):
                yield conn
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_CHECK_LOCK})")
            conn.commit()


def run_check(conn: Connection, *, full: bool = True, prove: bool = False) -> CheckReport:
    """Check every invariant. ``full=False`` reads only the records of entries not yet proven; ``prove``
    records the entries proven when every invariant holds (in the caller's transaction)."""
    rep = CheckReport()
    scope = _Scope.of(conn, full)
    p = postings.c
    debits, credits = conn.execute(select(func.coalesce(func.sum(p.debit), 0),
                                          func.coalesce(func.sum(p.credit), 0))).one()
    rep.figures.update(debits=int(debits), credits=int(credits))
    if debits != credits:
        rep.fail("debits == credits", f"all debits {debits} != all credits {credits}", {})
    unbalanced = conn.execute(select(p.entry_id, func.sum(p.debit), func.sum(p.credit)).group_by(p.entry_id)
                              .having(func.sum(p.debit) != func.sum(p.credit)).limit(_EVIDENCE_LIMIT)).all()
    if unbalanced:
        rep.fail("every entry balanced", f"{len(unbalanced)} journal entries do not balance",
                 [{"entry_id": e, "debits": int(d), "credits": int(c)} for e, d, c in unbalanced])

    ledger_float = ledger.card_float(conn)
    shadow = int(conn.execute(select(func.coalesce(func.sum(card_accounts.c.balance), 0))).scalar_one())
    with _through_the_entry_index(conn, scope):
        read, sub = conn.execute(select(func.count(), func.coalesce(func.sum(_delta()), 0))
                                 .where(scope.records())).one()
    if not full:
        sub += int(conn.execute(select(func.coalesce(func.sum(checked_entries.c.records_net), 0))).scalar_one())
    rep.figures.update(card_float=ledger_float, shadow_balances=shadow, records_net=int(sub), records_read=int(read),
                       full=int(full))
    if ledger_float != shadow:
        rep.fail("card float == sum of shadow balances",
                 f"ledger card float {ledger_float} != sum of shadow balances {shadow}",
                 {"card_float": ledger_float, "shadow_balances": shadow, "records_net": sub})
    with _through_the_entry_index(conn, scope):
        _per_card(conn, rep, scope)
    _replacements(conn, rep)
    _deposits(conn, rep)
    with _through_the_entry_index(conn, scope):
        _per_entry(conn, rep, scope)
    _merchants(conn, rep)
    with _through_the_entry_index(conn, scope):
        _sales_ledger(conn, rep, scope)
    with _through_the_entry_index(conn, scope):
        _references(conn, rep, scope)
    with _through_the_entry_index(conn, scope):
        _card_days(conn, rep, scope)
    _quarantine(conn, rep)
    _held_records(conn, rep)
    if full:
        _proven_unchanged(conn, rep)
        _points_days(conn, rep)
    if prove and rep.ok:
        proving = scope if not full else _Scope.of(conn, False)
        with _through_the_entry_index(conn, proving):
            rep.figures["entries_proved"] = _prove(conn, proving)
    return rep


def _prove(conn: Connection, scope: _Scope) -> int:
    """Keep the entries just proven, with their records' count and net, their batches' sales and their cards'
    nets as their records sum to; how many entries were new. ``scope`` is the entries not proven yet (also
    after a full check: a proven entry must not be added to a card twice), so the entries go in last.
    Two checks never prove at once (``check_snapshot``)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    d = _records_as_sales(scope).subquery().c
    conn.execute(dialect.insert(checked_sales).from_select(
        ["batch_id", "day", "merchant_id", "terminal_id", *_SALES_FIGURES[2:]],
        select(d.batch_id, d.day, d.merchant_id, d.terminal_id, *[d[n] for n in _SALES_FIGURES[2:]])
        .where(d.batch_id.is_not(None)))  # a WHERE, so SQLite does not read ON CONFLICT as a join's ON
        .on_conflict_do_nothing(index_elements=["batch_id", "day"]))
    new = _new_per_card(scope).c
    upsert = dialect.insert(checked_cards).from_select(["card_number", "records_net"],
                                                       select(new.n, new.s).where(new.n.is_not(None)))
    conn.execute(upsert.on_conflict_do_update(index_elements=["card_number"], set_={
        "records_net": checked_cards.c.records_net + upsert.excluded.records_net}))
    je, r, ce = journal_entries.c, records.c, checked_entries.c
    proven = (select(je.id, func.count(r.entry_id), func.coalesce(func.sum(_delta()), 0))
              .select_from(journal_entries.outerjoin(records, r.entry_id == je.id))
              .where(je.id.in_(scope.entries()), ~exists().where(ce.entry_id == je.id)).group_by(je.id))
    stmt = dialect.insert(checked_entries).from_select(["entry_id", "records", "records_net"], proven)
    stmt = stmt.on_conflict_do_nothing(index_elements=["entry_id"]).returning(checked_entries.c.entry_id)
    return len(conn.execute(stmt).all())


def _proven_unchanged(conn: Connection, rep: CheckReport) -> None:
    """An entry proven before still has the records it had then (a full check's audit of the proofs)."""
    r, ce = records.c, checked_entries.c
    now = (select(r.entry_id.label("e"), func.count().label("n"), func.sum(_delta()).label("s"))
           .group_by(r.entry_id).subquery())
    bad = conn.execute(select(ce.entry_id, ce.records, ce.records_net, func.coalesce(now.c.n, 0),
                              func.coalesce(now.c.s, 0))
                       .select_from(checked_entries.outerjoin(now, now.c.e == ce.entry_id))
                       .where((func.coalesce(now.c.n, 0) != ce.records) | (func.coalesce(now.c.s, 0) != ce.records_net))
                       .limit(_EVIDENCE_LIMIT)).all()
    cc = checked_cards.c
    per_card = (select(r.card_number.label("n"), func.sum(_delta()).label("s"))
                .select_from(records.join(checked_entries, ce.entry_id == r.entry_id)).group_by(r.card_number)
                .subquery())
    cards = conn.execute(select(cc.card_number, cc.records_net, func.coalesce(per_card.c.s, 0))
                         .select_from(checked_cards.outerjoin(per_card, per_card.c.n == cc.card_number))
                         .where(func.coalesce(per_card.c.s, 0) != cc.records_net).limit(_EVIDENCE_LIMIT)).all()
    if bad or cards:
        rep.fail("proven entries unchanged", f"{len(bad)} journal entries' and {len(cards)} cards' records changed "
                 "since a check proved them",
                 [{"entry_id": e, "proven_records": int(n0), "proven_net": int(s0), "records": int(n1),
                   "records_net": int(s1)} for e, n0, s0, n1, s1 in bad]
                 + [{"card_number": n, "proven_net": int(p), "records_net": int(q)} for n, p, q in cards])


def _points_days(conn: Connection, rep: CheckReport) -> None:
    """The points report's aggregates equal the records walked again (an audit: it reads every purchase)."""
    pd = points_days.c
    expected, _ = recount(conn)
    stored = {(int(day), int(program)): [int(v) for v in rest] for day, program, *rest in conn.execute(
        select(pd.day, pd.program_id, pd.earned, pd.redeemed, pd.lapsed, pd.to_prizes, pd.held_change))}
    differ = sorted(key for key in set(expected) | set(stored)
                    if expected.get(key, [0] * 5) != stored.get(key, [0] * 5))
    if differ:
        rep.fail("points_days == the records walked", f"{len(differ)} days' points of a program differ from "
                 "their records", [{"day": day, "program_id": program, "stored": stored.get((day, program)),
                                    "records": expected.get((day, program))}
                                   for day, program in differ[:_EVIDENCE_LIMIT]])


def _card_days(conn: Connection, rep: CheckReport, scope: _Scope) -> None:
    """The days of use the records read now say are all in ``card_days``; a full check also finds the rows
    no record says (a row there counts a card as used that was not)."""
    d, r = card_days.c, records.c
    missing = conn.execute(
        select(r.day, r.card_number).where(scope.records(), r.record_type.in_(USES),
                                           ~exists().where(d.day == r.day, d.card_number == r.card_number))
        .distinct().limit(_EVIDENCE_LIMIT)).all()
    extra = [] if not scope.full else conn.execute(
        select(d.day, d.card_number).where(~exists().where(r.card_number == d.card_number, r.day == d.day,
                                                           r.record_type.in_(USES)))
        .limit(_EVIDENCE_LIMIT)).all()
    if missing or extra:
        rep.fail("card_days == the records' days of use", f"{len(missing)} card days of the records are missing "
                 f"from card_days and {len(extra)} there have no record",
                 [{"day": int(day), "card_number": n, "problem": "missing"} for day, n in missing]
                 + [{"day": int(day), "card_number": n, "problem": "no record"} for day, n in extra])


def _quarantine(conn: Connection, rep: CheckReport) -> None:
    """What rejected batches hold: money that left cards at a till but is in no ledger yet.

    The invariants hold without it (nothing of a rejected batch is posted), which is exactly why it
    must be said: until the batch is repaired and imported, the card float overstates the money on
    the cards and the merchant is owed sales nobody will settle. The amounts are what each file's
    trailer announces; the file failed verification, so they are a terminal's word, not proof."""
    b = batches.c
    accepted = batches.alias("accepted")
    twin = (select(accepted.c.id).where(accepted.c.status == "accepted", accepted.c.terminal_id == b.terminal_id,
                                        accepted.c.batch_seq == b.batch_seq).exists())
    held = conn.execute(select(b.id, b.file_name, b.quarantine_path, b.reason)
                        .where(b.status == "quarantined", b.quarantine_path.is_not(None), ~twin)
                        .order_by(b.id)).all()
    # Left out: files that were no batch at all (not kept), and damaged copies of an accepted batch (its
    # records came in with the good copy).
    purchases = cancels = loads_total = unreadable = 0
    for _, _, path, _ in held:
        try:
            trailer = open_batch(Path(path)).trailer if path else None
        except BatchRejected:
            trailer = None
        if trailer is None:
            unreadable += 1
            continue
        purchases += trailer.purchase_total
        cancels += trailer.cancel_total
        loads_total += trailer.load_total
    rep.figures.update(quarantined_batches=len(held), quarantined_purchases=purchases,
                       quarantined_cancellations=cancels, quarantined_loads=loads_total,
                       quarantined_unreadable=unreadable)


def _held_records(conn: Connection, rep: CheckReport) -> None:
    """Records held out of accepted batches because their card certificate does not verify.

    Like quarantine, outside the invariants by construction (nothing of them is posted) and said for the
    same reason: a till took that money from a card, and no ledger shows it. The amounts are the
    records' own, which only the terminal's chain vouches for."""
    a = anomalies.c
    held = [row.evidence for row in conn.execute(select(a.evidence).where(a.kind == AnomalyKind.BAD_CERTIFICATE))]
    totals = {kind: sum(e["amount"] for e in held if e["record_type"] == kind)
              for kind in (RecordType.PURCHASE, RecordType.CANCEL, RecordType.LOAD)}
    rep.figures.update(held_records=len(held), held_purchases=totals[RecordType.PURCHASE],
                       held_cancellations=totals[RecordType.CANCEL], held_loads=totals[RecordType.LOAD])


def _references(conn: Connection, rep: CheckReport, scope: _Scope) -> None:
    """What foreign keys would enforce on ``records`` (left out for bulk speed, see the schema),
    and the settlement named by a ``sales`` row (declared there; checked too, as SQLite's
    enforcement depends on a connection pragma)."""
    r, b, s, sa = records.c, batches.c, settlements.c, sales.c
    lost_batch = conn.execute(select(r.card_number, r.counter, r.batch_id).select_from(
        records.outerjoin(batches, (b.id == r.batch_id) & (b.status == "accepted")))
        .where(r.batch_id.is_not(None), b.id.is_(None), scope.records()).limit(_EVIDENCE_LIMIT)).all()
    lost_settlement = conn.execute(select(sa.batch_id, sa.day, sa.settlement_id).select_from(
        sales.outerjoin(settlements, s.id == sa.settlement_id))
        .where(sa.settlement_id.is_not(None), s.id.is_(None)).limit(_EVIDENCE_LIMIT)).all()
    if lost_batch or lost_settlement:
        rep.fail("references", f"{len(lost_batch)} records name a batch, {len(lost_settlement)} sales rows a "
                 "settlement, that does not exist",
                 [{"card_number": n, "counter": c, "batch_id": x} for n, c, x in lost_batch]
                 + [{"batch_id": x, "day": d, "settlement_id": i} for x, d, i in lost_settlement])


_SALES_FIGURES = ("merchant_id", "terminal_id", "purchase_count", "purchase_total", "cancel_count", "cancel_total")


def _records_as_sales(scope: _Scope) -> Select[Any]:
    """Per (batch, day), the purchases and cancellations of the records to read now, as ``sales`` would
    have them (with the highest merchant and terminal beside the lowest: they must be one)."""
    r = records.c
    is_p, is_c = r.record_type == RecordType.PURCHASE, r.record_type == RecordType.CANCEL
    return (select(r.batch_id.label("batch_id"), r.day.label("day"),
                   func.min(r.merchant_id).label("merchant_id"), func.max(r.merchant_id).label("merchant_hi"),
                   func.min(r.terminal_id).label("terminal_id"), func.max(r.terminal_id).label("terminal_hi"),
                   func.sum(case((is_p, 1), else_=0)).label("purchase_count"),
                   func.sum(case((is_p, r.amount), else_=0)).label("purchase_total"),
                   func.sum(case((is_c, 1), else_=0)).label("cancel_count"),
                   func.sum(case((is_c, r.amount), else_=0)).label("cancel_total"))
            .where(r.batch_id.is_not(None), r.record_type.in_([RecordType.PURCHASE, RecordType.CANCEL]),
                   scope.records())
            .group_by(r.batch_id, r.day))


def _sales_ledger(conn: Connection, rep: CheckReport, scope: _Scope) -> None:
    """Each ``sales`` row is the sum of its records: the aggregate may never drift from its detail. The
    detail of batches proven before is what their records summed to then (``checked_sales``): every sales
    row is compared at every check, but only the new records are read."""
    sa, cs = sales.c, checked_sales.c
    detail_rows: Select[Any] | CompoundSelect[Any] = _records_as_sales(scope)
    if not scope.full:  # the batches proven before, as their records were then (a sales row may drift since)
        detail_rows = union_all(detail_rows, select(cs.batch_id, cs.day, cs.merchant_id, cs.merchant_id,
                                                    cs.terminal_id, cs.terminal_id, cs.purchase_count,
                                                    cs.purchase_total, cs.cancel_count, cs.cancel_total))
    detail = detail_rows.subquery()
    d = detail.c
    differs = or_(sa.batch_id.is_(None), d.merchant_hi != d.merchant_id, d.terminal_hi != d.terminal_id,
                  *[d[name] != sa[name] for name in _SALES_FIGURES])
    bad = conn.execute(select(d.batch_id, d.day, *[d[n] for n in _SALES_FIGURES], *[sa[n] for n in _SALES_FIGURES])
                       .select_from(detail.outerjoin(sales, (sa.batch_id == d.batch_id) & (sa.day == d.day)))
                       .where(differs).order_by(d.batch_id, d.day).limit(_EVIDENCE_LIMIT)).all()
    empty = conn.execute(select(sa.batch_id, sa.day, *[sa[n] for n in _SALES_FIGURES])
                         .select_from(sales.outerjoin(detail, (d.batch_id == sa.batch_id) & (d.day == sa.day)))
                         .where(d.batch_id.is_(None)).order_by(sa.batch_id, sa.day).limit(_EVIDENCE_LIMIT)).all()
    if not bad and not empty:
        return
    n = len(_SALES_FIGURES)
    evidence = [{"batch_id": row[0], "day": row[1], "records": dict(zip(_SALES_FIGURES, map(_int, row[2:2 + n]),
                                                                        strict=True)),
                 "sales": None if row[2 + n] is None else dict(zip(_SALES_FIGURES, map(_int, row[2 + n:]),
                                                                   strict=True))} for row in bad]
    evidence += [{"batch_id": row[0], "day": row[1], "records": None,
                  "sales": dict(zip(_SALES_FIGURES, map(_int, row[2:]), strict=True))} for row in empty]
    rep.fail("sales == sum of their records", f"{len(bad) + len(empty)} (batch, day) sales rows differ from the "
             "purchases and cancellations recorded for them", evidence[:_EVIDENCE_LIMIT])


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _new_per_card(scope: _Scope) -> Subquery:
    """Per card, what the records to read now net to."""
    r = records.c
    return (select(r.card_number.label("n"), func.sum(_delta()).label("s")).where(scope.records())
            .group_by(r.card_number).subquery())


def _per_card(conn: Connection, rep: CheckReport, scope: _Scope) -> None:
    """Each card's shadow balance is the sum of its records and transfers: of every card from all its records,
    or of the cards the entries to prove now touched, from what their proven records netted to
    (``checked_cards``) and their new records: the cost is what changed, not the cards' histories."""
    r, ca, tp, cc = records.c, card_accounts.c, transfers_posted.c, checked_cards.c
    moved_out = select(tp.old_card.label("n"), func.sum(tp.amount).label("s")).group_by(tp.old_card).subquery()
    moved_in = select(tp.new_card.label("n"), func.sum(tp.amount).label("s")).where(tp.to_chip.is_(False)) \
        .group_by(tp.new_card).subquery()  # since 0003 the money reaches the new card as a load record
    if scope.full:
        per_record = select(r.card_number.label("n"), func.sum(_delta()).label("s")).group_by(r.card_number).subquery()
        cards = card_accounts.outerjoin(per_record, per_record.c.n == ca.card_number)
        with_records = per_record
    else:  # the cards touched since: what their proven records net to, plus their new records
        with_records = _new_per_card(scope)
        new = with_records.c
        touched = union(select(new.n), select(tp.old_card).where(tp.entry_id.in_(scope.entries())),
                        select(tp.new_card).where(tp.entry_id.in_(scope.entries()))).subquery()
        per_record = (select(touched.c[0].label("n"),
                             (func.coalesce(cc.records_net, 0) + func.coalesce(new.s, 0)).label("s"))
                      .select_from(touched.outerjoin(checked_cards, cc.card_number == touched.c[0])
                                   .outerjoin(with_records, new.n == touched.c[0])).subquery())
        cards = per_record.join(card_accounts, ca.card_number == per_record.c.n)
    expected = (func.coalesce(per_record.c.s, 0) + func.coalesce(moved_in.c.s, 0)
                - func.coalesce(moved_out.c.s, 0))
    stmt = (select(ca.card_number, ca.balance, expected)
            .select_from(cards.outerjoin(moved_in, moved_in.c.n == ca.card_number)
                         .outerjoin(moved_out, moved_out.c.n == ca.card_number))
            .where(ca.balance != expected).limit(_EVIDENCE_LIMIT))
    bad = conn.execute(stmt).all()
    orphans = conn.execute(select(with_records.c.n).select_from(
        with_records.outerjoin(card_accounts, ca.card_number == with_records.c.n))
        .where(ca.card_number.is_(None)).limit(_EVIDENCE_LIMIT)).scalars().all()
    if bad or orphans:
        rep.fail("shadow balance == sum of the card's records",
                 f"{len(bad) + len(orphans)} cards whose shadow balance is not the sum of their records",
                 [{"card_number": n, "shadow_balance": int(b), "records_sum": int(e)} for n, b, e in bad]
                 + [{"card_number": n, "shadow_balance": None} for n in orphans])


def _replacements(conn: Connection, rep: CheckReport) -> None:
    """Replacement payable == the transfers posted to reach a new chip − the transfer loads posted; and
    each transfer was loaded onto its new card in full or not yet (``smartpurse load NEW --transfer``)."""
    tp, lo, r = transfers_posted.c, loads.c, records.c
    owed = {key: (new, int(amount)) for key, new, amount in conn.execute(
        select(tp.transfer_key, tp.new_card, tp.amount).where(tp.to_chip.is_(True)))}
    paid: dict[str, tuple[str, int]] = {}
    for transfer_id, number, amount in conn.execute(
            select(lo.transfer_id, lo.card_number, r.amount).select_from(
                loads.join(records, (r.card_number == lo.card_number) & (r.counter == lo.counter)))
            .where(lo.transfer_id.is_not(None))):
        paid[transfer_key(transfer_id)] = (number, int(amount))
    payable = ledger.replacement_payable(conn)
    rep.figures["replacement_payable"] = payable
    expected = sum(a for _, a in owed.values()) - sum(a for _, a in paid.values())
    wrong = [{"transfer": key, "new_card": owed.get(key, (None, 0))[0], "amount": owed.get(key, (None, None))[1],
              "loaded_to": number, "loaded": amount}
             for key, (number, amount) in paid.items() if owed.get(key) != (number, amount)]
    if payable != expected or wrong:
        rep.fail("replacement payable == transfers − their loads",
                 f"replacement payable {payable}, transfers not yet loaded onto their new cards {expected}"
                 + (f"; {len(wrong)} transfer loads do not match their transfer" if wrong else ""),
                 {"replacement_payable": payable, "expected": expected, "transfer_loads": wrong[:_EVIDENCE_LIMIT]})


def _deposits(conn: Connection, rep: CheckReport) -> None:
    """Card deposits held == the deposits posted as taken − those posted as refunded; and every cash-out
    the desks recorded is posted (processing posts them at its next run)."""
    d, co, r = card_deposits.c, cash_outs.c, records.c
    moves = dict(conn.execute(select(d.move, func.sum(d.amount)).where(d.entry_id.is_not(None)).group_by(d.move))
                 .all())
    expected = int(moves.get(DepositMove.TAKEN) or 0) - int(moves.get(DepositMove.REFUNDED) or 0)
    held = -ledger.balance(conn, ledger.CARD_DEPOSITS)
    waiting = int(conn.execute(select(func.count()).select_from(card_deposits).where(d.entry_id.is_(None)))
                  .scalar_one())
    unposted = int(conn.execute(select(func.count()).select_from(cash_outs.outerjoin(
        records, (r.card_number == co.card_number) & (r.counter == co.counter))).where(r.counter.is_(None)))
        .scalar_one())
    rep.figures.update(card_deposits=held, deposits_to_post=waiting, cash_outs_to_post=unposted)
    if held != expected:
        rep.fail("card deposits == deposits taken − refunded", f"the ledger holds {held} of card deposits, the "
                 f"desks' posted deposits say {expected}", {"card_deposits": held, "expected": expected})


def _per_entry(conn: Connection, rep: CheckReport, scope: _Scope) -> None:
    """Each entry's card-float movement must equal the sum of the records it posted (each entry to prove now)."""
    r, p, a, je = records.c, postings.c, accounts.c, journal_entries.c
    float_move = (select(p.entry_id.label("e"), func.sum(p.credit - p.debit).label("m"))
                  .select_from(postings.join(accounts, a.id == p.account_id))
                  .where(a.code == ledger.CARD_FLOAT).group_by(p.entry_id).subquery())
    posted = select(r.entry_id.label("e"), func.sum(_delta()).label("s"), func.count().label("n")) \
        .where(scope.records()).group_by(r.entry_id).subquery()
    stmt = (select(je.id, je.kind, func.coalesce(float_move.c.m, 0), func.coalesce(posted.c.s, 0))
            .select_from(journal_entries.outerjoin(float_move, float_move.c.e == je.id)
                         .outerjoin(posted, posted.c.e == je.id))
            .where(je.kind.in_(ledger.RECORD_ENTRY_KINDS), je.id.in_(scope.entries()),
                   func.coalesce(float_move.c.m, 0) != func.coalesce(posted.c.s, 0)).limit(_EVIDENCE_LIMIT))
    bad = conn.execute(stmt).all()
    stray = conn.execute(select(posted.c.e, posted.c.n).select_from(
        posted.outerjoin(journal_entries, je.id == posted.c.e))
        .where((je.id.is_(None)) | (je.kind.not_in(ledger.RECORD_ENTRY_KINDS))).limit(_EVIDENCE_LIMIT)).all()
    if bad or stray:
        rep.fail("every record posted once",
                 f"{len(bad) + len(stray)} journal entries whose card-float movement is not the sum of their records",
                 [{"entry_id": e, "kind": k, "card_float_movement": int(m), "records_sum": int(s)}
                  for e, k, m, s in bad] + [{"entry_id": e, "records": int(n), "problem": "records point at an "
                                             "entry that posts no records"} for e, n in stray])


def _merchants(conn: Connection, rep: CheckReport) -> None:
    sa, p, a = sales.c, postings.c, accounts.c
    unsettled = dict(conn.execute(select(sa.merchant_id, func.sum(sa.purchase_total - sa.cancel_total))
                                  .where(sa.settlement_id.is_(None)).group_by(sa.merchant_id)).all())
    payable = dict(conn.execute(select(a.merchant_id, func.sum(p.credit - p.debit)).select_from(
        postings.join(accounts, a.id == p.account_id)).where(a.merchant_id.is_not(None))
        .group_by(a.merchant_id)).all())
    bad = [{"merchant_id": m, "payable": int(payable.get(m) or 0), "unsettled_sales": int(unsettled.get(m) or 0)}
           for m in sorted(set(unsettled) | set(payable)) if int(payable.get(m) or 0) != int(unsettled.get(m) or 0)]
    if bad:
        rep.fail("merchant payable == unsettled sales", f"{len(bad)} merchants whose payable differs from their "
                 "unsettled sales", bad[:_EVIDENCE_LIMIT])
