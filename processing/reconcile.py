"""Reconciling each card's history as records arrive, in any order, from any terminal.

Per card processing keeps a *chain head*: the highest counter up to which every
counter is present, with the balance after it and each program's points. A new record
that continues the head is checked at once (balance before == previous balance after,
points before == previous points after of that program) and moves the head. A record
beyond the head leaves a gap: it is stored and posted (its certificate proves the card
did it) and waits; when the missing records arrive, the head walks through the stored
ones: from memory, those this process stored while it holds the card's state, else from the
database. A gap still open after ``gap_seconds`` is an anomaly.

The shadow balance is different on purpose: it is the sum of every posted record of
the card, in whatever order they came, so money is conserved whatever arrives late
(docs/design.md, invariant 1); the chain head is what detects clones and forgeries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select

from processing.anomalies import Anomaly, AnomalyKind, record_evidence
from processing.columns import BLOCK, CANCEL, PURCHASE, EntryColumns
from processing.points_days import PointsMoved, add_points_days, count_record
from processing.rows import (
    AMOUNT,
    CARD_NUMBER,
    COUNTER,
    DAY,
    RAW,
    RECORD_TYPE,
    TERMINAL_ID,
    TERMINAL_SEQ,
    Row,
)
from processing.schema import stored_utc
from processing.schema.processing import anomalies, card_accounts, card_points, records
from processing.schema.registry import cards
from processing.store import bump_records_version, records_after, records_version, select_in, write_card_accounts
from purse.records import RECORD_LAYOUT, money_effect, record_details

_IN = 500
# What the walk and a closer step read from a record's raw bytes, by name (purse.records.RECORD_LAYOUT):
# a plain struct, because these run once per record.
_WALK = RECORD_LAYOUT.sparse(("balance_after", "program_id", "time"))
_STEP = RECORD_LAYOUT.sparse(("balance_after", "program_id", "points_before", "points_after", "points_earned",
                              "points_redeemed", "prizes", "time"))


@dataclass(slots=True)
class CardWalk:
    number: str
    exists: bool
    chain_counter: int = 0
    chain_balance: int = 0
    chain_time: int = 0
    max_counter: int = 0
    gap_since: int | None = None
    points: dict[int, int] | None = None  # program -> points at the head; most cards have no program
    points_counter: dict[int, int] | None = None
    points_prize: dict[int, bool] | None = None  # program -> the head's record turned points into a prize
    delta: int = 0
    detached: bool = False  # a new record did not continue the head: the head stays, the gap may close later
    gap_filled: bool = False  # ... and then the record after the head came: walk on at the end
    last_seen: int = -1  # last counter of this card in the current batch, in terminal order
    # The stored records beyond the head this process knows, in no order, and whether they are all there are:
    # true of a card read from the database with no gap (nothing stored beyond its head) or walked from storage
    # with the rest kept, and kept true while the card stays in this process's cache (``CardCache``: no one
    # else stores a record meanwhile) and ``ChainWalker.KEEP_WAITING`` is not reached. Then a gap closed by a
    # later batch walks on through these, not through a query.
    waiting: list[Row] | None = None
    beyond_known: bool = False

    def __reduce__(self) -> tuple[type[CardWalk], tuple[Any, ...]]:
        """Pickle as the constructor's arguments: a large import sends the states of every card of a
        batch to its worker and back, and the default for a slots class pickles 15 times slower."""
        return CardWalk, (self.number, self.exists, self.chain_counter, self.chain_balance, self.chain_time,
                          self.max_counter, self.gap_since, self.points, self.points_counter,
                          self.points_prize, self.delta,
                          self.detached, self.gap_filled, self.last_seen, self.waiting, self.beyond_known)


def hotlist_times(conn: Connection) -> dict[str, int]:
    """Card number -> unix time from which the card must not be used (blocked or cloned)."""
    out: dict[str, int] = {}
    for number, blocked_at in conn.execute(
            select(cards.c.number, cards.c.blocked_at).where(cards.c.blocked_at.is_not(None))):
        out[number] = int(stored_utc(blocked_at).timestamp())
    for number, detected in conn.execute(select(anomalies.c.card_number, anomalies.c.detected_at)
                                         .where(anomalies.c.kind == AnomalyKind.CLONE)):
        t = int(stored_utc(detected).timestamp())
        out[number] = min(out.get(number, t), t)
    return out


class ChainWalker:
    """The chain checks themselves, on card states in memory: no database.

    A large import runs them in its verifying worker (processing.worker) while the main process
    stores, and the ``Reconciler`` runs them in line for everything else."""

    # Records beyond the heads kept in memory, at most (``CardWalk.waiting``): 550 bytes each as Python
    # objects, so 55 MB at most. A day's records arriving out of order wait a few groups for the records
    # before them; a card whose records are not kept is walked from the database, as all were before.
    KEEP_WAITING = 100_000

    def __init__(self, cards: dict[str, CardWalk], hotlist: dict[str, int], kept: int = 0,
                 keep: int | None = None) -> None:
        """``kept``: records in the ``waiting`` lists of ``cards`` already; ``keep``: the most to hold
        (``KEEP_WAITING``; 0 in a worker, whose states go back to an importer that counts its own)."""
        self.cards = cards
        self.hotlist = hotlist
        self.found: list[Anomaly] = []
        self.points_moved: PointsMoved = {}  # what the records walked did to the points (processing.points_days)
        self.kept = kept
        self.keep = self.KEEP_WAITING if keep is None else keep

    def check_order(self, rows: Sequence[Row]) -> None:
        """Counter rollback within the terminal's chain, and use of a hotlisted card."""
        for r in rows:
            self._check_one(self.cards[r[CARD_NUMBER]], r)

    def _check_one(self, w: CardWalk, r: Row) -> None:
        number, counter, terminal = r[CARD_NUMBER], r[COUNTER], r[TERMINAL_ID]
        if counter <= w.last_seen:
            self.found.append(Anomaly(
                AnomalyKind.COUNTER_ROLLBACK, f"rollback:{number}:{counter}:{terminal}:{r[TERMINAL_SEQ]}",
                f"card {number}: counter {counter} after counter {w.last_seen} at terminal {terminal}",
                {"record": record_evidence(r), "previous_counter": w.last_seen}, number, counter, terminal))
        w.last_seen = counter
        blocked = self.hotlist.get(number)
        if blocked is not None and r[RECORD_TYPE] != BLOCK:
            when = record_details(r[RAW]).time
            if when > blocked:
                self.found.append(Anomaly(
                    AnomalyKind.HOTLISTED_USE, f"hotlisted:{number}:{counter}",
                    f"card {number} used at {_iso(when)}, blocked since {_iso(blocked)}",
                    {"record": record_evidence(r), "blocked_at": blocked}, number, counter, terminal))

    def walk(self, rows: Sequence[Row], check_order: bool = False) -> None:
        """Advance chain heads through newly stored rows (terminal order: per card, counters rise).

        With ``check_order`` it also does ``check_order``'s work (all rows of the chunk are new)."""
        walked = [_WALK.unpack(r[RAW]) for r in rows]
        afters, programs, times = zip(*walked, strict=True) if walked else ((), (), ())
        self._walk(([r[CARD_NUMBER] for r in rows], [r[COUNTER] for r in rows],
                    [money_effect(r[RECORD_TYPE], r[AMOUNT]) for r in rows], afters, programs, times),
                   rows.__getitem__, check_order)

    def walk_columns(self, cols: EntryColumns) -> None:
        """``walk(rows, check_order=True)`` for a chunk whose records were all new, read from columns:
        no row tuple per record (the columns are Python lists made in C)."""
        self._walk(cols.walk_columns(), cols.row, True)

    def _walk(self, columns: tuple[Sequence[Any], ...], row_of: Callable[[int], Row], check_order: bool) -> None:
        """The loop every record of every batch goes through, so the common case is inlined: a purchase
        continuing its card's chain, no program, card not hotlisted, counter rising. A row is built
        only for the rare record that needs a closer look (``_check_one``, ``_step``)."""
        cards = self.cards
        hot = self.hotlist
        numbers, counters, signed_amounts, afters, programs, times = columns
        for i, number in enumerate(numbers):
            w = cards[number]
            counter = counters[i]
            if check_order:
                if counter > w.last_seen and not (hot and number in hot):
                    w.last_seen = counter
                else:
                    self._check_one(w, row_of(i))
            signed = signed_amounts[i]
            w.delta += signed
            if counter > w.max_counter:
                w.max_counter = counter
            if w.detached or counter != w.chain_counter + 1:
                if counter == w.chain_counter + 1:
                    w.gap_filled = True  # the head stopped at an earlier record's gap, which this one fills
                w.detached = True
                if w.beyond_known:
                    self._keep_waiting(w, [row_of(i)])
                continue
            after = afters[i]
            if programs[i] or after - signed != w.chain_balance:
                self._step(w, row_of(i))
            else:
                w.chain_counter, w.chain_balance, w.chain_time = counter, after, times[i]

    def _keep_waiting(self, w: CardWalk, rows: list[Row]) -> None:
        """Add ``rows`` to the card's known records beyond its head, or, past the limit, stop knowing them."""
        if self.kept + len(rows) > self.keep:
            self.kept = max(0, self.kept - len(w.waiting or ()))
            w.waiting, w.beyond_known = None, False
        elif rows:
            self.kept += len(rows)
            if w.waiting is None:
                w.waiting = rows
            else:
                w.waiting += rows

    def _step(self, w: CardWalk, r: Row) -> None:
        kind, counter, terminal = r[RECORD_TYPE], r[COUNTER], r[TERMINAL_ID]
        after, program, points_before, points_after, earned, redeemed, prizes, when = _STEP.unpack(r[RAW])
        before = after - money_effect(kind, r[AMOUNT])
        if before != w.chain_balance:
            self.found.append(Anomaly(
                AnomalyKind.BALANCE_OUT_OF_CHAIN, f"balance:{w.number}:{counter}",
                f"card {w.number} counter {counter}: balance before {before}, previous record left {w.chain_balance}",
                {"record": record_evidence(r), "previous_counter": w.chain_counter,
                 "previous_balance_after": w.chain_balance, "balance_before": before}, w.number, counter, terminal))
        if program and kind in (PURCHASE, CANCEL):
            if w.points is None or w.points_counter is None:
                w.points, w.points_counter = {}, {}
            if w.points_prize is None:
                w.points_prize = {}
            previous = w.points.get(program)
            if previous is not None and previous != points_before:
                self.found.append(Anomaly(
                    AnomalyKind.POINTS_OUT_OF_CHAIN, f"points:{w.number}:{counter}",
                    f"card {w.number} counter {counter}: program {program} points before {points_before}, "
                    f"previous record left {previous}",
                    {"record": record_evidence(r), "previous_counter": w.points_counter.get(program),
                     "previous_points_after": previous, "points_before": points_before}, w.number, counter,
                    terminal))
            w.points_prize[program] = count_record(self.points_moved, r[DAY], program, kind == PURCHASE,
                                                   points_before, points_after, earned, redeemed, prizes, previous,
                                                   w.points_prize.get(program, False))
            w.points[program] = points_after
            w.points_counter[program] = counter
        w.chain_counter, w.chain_balance, w.chain_time = counter, after, when


class Reconciler(ChainWalker):
    """Chain checks for one import: card states read from the database, then written back in bulk."""

    def __init__(self, conn: Connection, *, now: int, gap_seconds: int,
                 cached: tuple[dict[str, CardWalk], int] | None = None) -> None:
        """``cached``: chain states known to equal the database's, not read again, and the records their
        ``waiting`` lists hold (``CardCache.take``)."""
        known, kept = cached if cached is not None else ({}, 0)
        super().__init__(known, hotlist_times(conn), kept)
        self.conn = conn
        self.now = now
        self.gap_seconds = gap_seconds
        # The cards of this import, each with its (chain, highest) counter before it: only they can have moved,
        # so only they are reset, walked and written back. The cache may hold hundreds of thousands of others;
        # a batch must cost what it touches.
        self.heads: dict[str, tuple[int, int]] = {}

    # -- before storing: card state, order within the batch, hotlist ---------------------------
    def prepare(self, rows: Sequence[Row], check: bool = True) -> None:
        """Load the card accounts of cards first seen in ``rows``; check terminal order and hotlist.

        ``check=False`` only loads: the caller then passes ``check_order=True`` to ``walk`` when every
        row turned out new (the usual case), so the records are looped over once, not twice."""
        self.prepare_cards([r[CARD_NUMBER] for r in rows])
        if check:
            self.check_order(rows)

    def prepare_cards(self, numbers: Sequence[str]) -> None:
        """Load the card accounts of the cards not known yet; start this import's order check for cached ones."""
        # Membership tests, not ``set - dict.keys()``: that copies the set and walks every key of the dict,
        # and the cards cached from earlier batches are hundreds of thousands (12 ms a batch at 500,000).
        heads, cards = self.heads, self.cards
        new = {n for n in numbers if n not in heads}
        if not new:
            return
        for number in new:  # the terminal-order check is per import
            w = cards.get(number)
            if w is not None:
                w.last_seen = -1
        missing = sorted(n for n in new if n not in cards)
        if missing:
            self._load(missing)
        for number in new:
            w = self.cards[number]
            self.heads[number] = (w.chain_counter, w.max_counter)

    def next_batch(self, numbers: Iterable[str]) -> None:
        """Another batch of the same import begins (a group, processing.group_import): the terminal-order
        check is per batch, so it starts afresh for that batch's cards (loaded by ``prepare_cards``)."""
        for number in numbers:
            self.cards[number].last_seen = -1

    def forget(self, numbers: set[str]) -> None:
        """Drop these cards' states: the next ``prepare_cards`` reads them from the database again."""
        for number in numbers:
            self.cards.pop(number, None)
            self.heads.pop(number, None)

    def _load(self, numbers: list[str]) -> None:
        for row in select_in(self.conn, "SELECT card_number, chain_counter, chain_balance, chain_time, max_counter, "
                             "gap_since FROM card_accounts WHERE card_number", numbers):
            # nothing stored beyond the head (no gap): every record beyond it will be this process's
            self.cards[row[0]] = CardWalk(row[0], True, row[1], row[2], row[3], row[4], row[5],
                                          beyond_known=row[4] == row[1])
        for number in numbers:
            if number not in self.cards:
                self.cards[number] = CardWalk(number, False, beyond_known=True)
        for number, program, points, counter, won_prize in select_in(
                self.conn, "SELECT card_number, program_id, points, counter, won_prize FROM card_points "
                "WHERE card_number", numbers):
            w = self.cards[number]
            if w.points is None or w.points_counter is None or w.points_prize is None:
                w.points, w.points_counter, w.points_prize = {}, {}, {}
            w.points[program] = points
            w.points_counter[program] = counter
            w.points_prize[program] = bool(won_prize)

    def _continues_in_storage(self, w: CardWalk) -> bool:
        """Whether the record after the card's head may be stored, so that the head walks on from the database
        (for a card whose records beyond the head this process does not all know, ``CardWalk.beyond_known``).

        Every import ends by walking each head through the stored records that continue it, so none is left
        with the record after its head stored: only this import can have stored it. Either it came after the
        card detached (``gap_filled``), or the head moved here and a record stored earlier, beyond the old
        head (up to the old highest counter), may follow it. A card whose gap stays open is not read again:
        a day's records arriving out of order re-read every waiting record of every such card at each group
        (80,000 rows for a day of 100,000)."""
        old_chain, old_max = self.heads[w.number]
        return w.gap_filled or (w.chain_counter != old_chain and old_max > w.chain_counter)

    def _walk_on(self, touched: list[CardWalk]) -> None:
        """Continue each head through the stored records that continue it: those this process knows from
        memory, the others in one query (``_continues_in_storage``)."""
        self._walk_stored([w for w in touched if not w.beyond_known and self._continues_in_storage(w)])
        for w in touched:
            if w.beyond_known and w.waiting:
                self._walk_waiting(w)

    def _walk_waiting(self, w: CardWalk) -> None:
        waiting = sorted(w.waiting or (), key=itemgetter(COUNTER))
        done = 0  # walked, or not beyond the head any more
        while done < len(waiting) and waiting[done][COUNTER] <= w.chain_counter + 1:
            if waiting[done][COUNTER] == w.chain_counter + 1:
                self._step(w, waiting[done])
            done += 1
        self.kept -= done
        w.waiting = waiting[done:] or None

    def _walk_stored(self, walks: list[CardWalk]) -> None:
        """Continue each head through records that arrived before its gap closed (one query for all); what is
        left beyond the head is then known (``CardWalk.waiting``)."""
        stored = records_after(self.conn, [(w.number, w.chain_counter) for w in walks])
        for w in walks:
            rows = stored.get(w.number, [])
            walked = 0
            for r in rows:
                if r[COUNTER] != w.chain_counter + 1:
                    break
                self._step(w, r)
                walked += 1
            w.waiting, w.beyond_known = None, True
            self._keep_waiting(w, rows[walked:])

    # -- at the end: write the card accounts back -------------------------------------------------
    def finish(self) -> list[str]:
        """Walk detached cards from the database, record gaps, write accounts and the points the walk counted;
        the touched cards."""
        cards, heads = self.cards, self.heads
        # Moved: money (delta), a record off the head (detached), a gap, a new card, or records whose money
        # nets to nothing (a purchase and its cancellation): their chain moved all the same.
        touched = [w for w in (cards[n] for n in sorted(heads)) if w.delta or w.detached
                   or w.max_counter > w.chain_counter or not w.exists
                   or heads.get(w.number) != (w.chain_counter, w.max_counter)]
        self._walk_on(touched)
        for w in touched:
            if w.max_counter > w.chain_counter:
                if w.gap_since is None:
                    w.gap_since = self.now
            else:
                w.gap_since = None
        write_card_accounts(
            self.conn,
            [(w.number, w.delta, w.chain_counter, w.chain_balance, w.chain_time, w.max_counter, w.gap_since)
             for w in touched if not w.exists],
            [(w.number, w.delta, w.chain_counter, w.chain_balance, w.chain_time, w.max_counter, w.gap_since)
             for w in touched if w.exists])
        self._write_points(touched)
        add_points_days(self.conn, self.points_moved)
        self.points_moved = {}
        for w in touched:
            w.exists, w.delta, w.detached, w.gap_filled = True, 0, False, False
        return [w.number for w in touched]

    def _write_points(self, touched: list[CardWalk]) -> None:
        numbers = [w.number for w in touched if w.points]
        cp = card_points.c
        for i in range(0, len(numbers), _IN):
            self.conn.execute(card_points.delete().where(cp.card_number.in_(numbers[i : i + _IN])))  # few: programs
        rows = [{"card_number": w.number, "program_id": p, "points": pts, "counter": (w.points_counter or {})[p],
                 "won_prize": (w.points_prize or {}).get(p, False)}
                for w in touched if w.points for p, pts in w.points.items()]
        if rows:
            self.conn.execute(insert(card_points), rows)


def open_gaps(conn: Connection, now: int, gap_seconds: int) -> list[Anomaly]:
    """Gaps open longer than allowed: missing counters the late batches never brought."""
    ca = card_accounts.c
    out = []
    stmt = select(ca.card_number, ca.chain_counter, ca.max_counter, ca.gap_since).where(
        and_(ca.gap_since.is_not(None), or_(ca.gap_since <= now - gap_seconds))).order_by(ca.card_number)
    for number, head, top, since in conn.execute(stmt):
        nxt = conn.execute(select(records.c.counter).where(records.c.card_number == number,
                                                           records.c.counter > head)
                           .order_by(records.c.counter).limit(1)).scalar()
        missing = f"{head + 1}..{(nxt or top + 1) - 1}"
        out.append(Anomaly(AnomalyKind.COUNTER_GAP, f"gap:{number}:{head + 1}",
                           f"card {number}: counters {missing} missing since {_iso(since)}",
                           {"missing_from": head + 1, "missing_to": (nxt or top + 1) - 1, "gap_since": since,
                            "highest_counter": top}, number, head + 1))
    return out


def _iso(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class CardCache:
    """The card chain states one process wrote last, kept for its next batch.

    A ``process`` run of many batches touches the same cards again and again; reading their
    accounts back per batch cost as much as storing the records. The states are valid while no
    one else stored a record since our commit: chain states only move when records are stored,
    and every transaction that stores records counts a new ``records_version`` (processing.store)
    while it holds its locks, so the versions count commits in order. Our own count is the token;
    finding any other version at the next batch, a rollback or a failure empties the cache.
    Bounded: beyond ``limit`` cards nothing is kept.
    """

    def __init__(self, limit: int = 500_000) -> None:
        self.limit = limit
        self._cards: dict[str, CardWalk] | None = None
        self._kept = 0  # records in the cached cards' ``waiting`` lists (an upper bound once some are dropped)
        self._token: int | None = None
        self._taken: int | None = None
        self._staged: tuple[dict[str, CardWalk], int, int] | None = None

    def take(self, conn: Connection) -> tuple[dict[str, CardWalk], int]:
        """The cached states if still valid (else none), and the records their ``waiting`` lists hold; the caller
        owns them until ``stage``."""
        cards, token, kept = self._cards, self._token, self._kept
        self._cards = self._token = self._staged = None
        self._kept = 0
        self._taken = records_version(conn)
        if cards is None or token != self._taken:
            return {}, 0
        return cards, kept

    def stage(self, conn: Connection, cards: dict[str, CardWalk], mine: Iterable[str], kept: int) -> None:
        """Count this transaction's new records version and offer the states as it wrote them (``kept``: the
        records in their ``waiting`` lists).

        ``mine`` are the cards whose states this transaction read while it held their locks (a batch's, locked
        before it began; a group's, read once its batches were locked). If another importer committed since
        ``take``, the other cached states may be stale and only ``mine`` are kept."""
        version = bump_records_version(conn)
        if version != (self._taken or 0) + 1:
            cards = {n: cards[n] for n in mine}
        self._staged = (cards, version, kept) if len(cards) <= self.limit else None

    def committed(self) -> None:
        """The transaction committed: the staged states are the database's."""
        if self._staged is not None:
            self._cards, self._token, self._kept = self._staged
        self._staged = None
