"""Processing tables: batches (with quarantine), the record sub-ledger, per-batch daily sales
aggregates, shadow card accounts, anomalies, the double-entry journal, and merchant settlements.

Money is integer minor units everywhere (BigInteger). The ``records`` table is the
sub-ledger: one row per certified card transaction, primary key (card, counter), so a
record can be stored, and hence posted, at most once whatever is re-sent (docs/design.md,
invariant 3). Each row names the journal
entry that posted it; ``smartpurse check`` proves the entries and the rows agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    case,
    false,
    func,
    literal,
    text,
)
from sqlalchemy.sql.elements import ColumnElement

from processing.schema import CardNumber, metadata
from purse.protocol import RecordType
from purse.records import MONEY_SIGN

# Loads and cash-outs: a few records among the purchases, and the float's movements that ``sales`` does not
# hold. A literal, not bound parameters, so that SQLite can match a query's condition to the partial index on
# it (``ix_records_loads_cash_outs``) as PostgreSQL does.
LOADS_AND_CASH_OUTS = text(f"record_type IN ({int(RecordType.LOAD)}, {int(RecordType.CASH_OUT)})")

batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False),  # the file's digest: the idempotency key
    Column("status", String(12), nullable=False),  # 'accepted' | 'quarantined'
    Column("file_name", Text, nullable=False),
    Column("terminal_id", BigInteger),  # NULL when the header itself is unreadable
    Column("merchant_id", BigInteger),
    Column("batch_seq", BigInteger),
    Column("first_index", BigInteger),
    Column("record_count", BigInteger),
    Column("created", BigInteger),  # unix seconds, from the header
    Column("prev_chain_mac", LargeBinary(8)),
    Column("final_chain_mac", LargeBinary(8)),
    # Which of the terminal's logs made it (the header's log identity): batch numbers and the chain
    # count within one log. NULL when the header itself is unreadable.
    Column("log_id", LargeBinary(8)),
    Column("accepted", BigInteger, nullable=False, server_default="0"),  # records new to processing
    Column("duplicates", BigInteger, nullable=False, server_default="0"),
    Column("reason", Text),  # why a quarantined batch was rejected: record and check
    Column("quarantine_path", Text),
    Column("imported_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("sha256", name="uq_batches_sha256"),
    CheckConstraint("status IN ('accepted', 'quarantined')", name="status"),
    Index("ix_batches_terminal_seq", "terminal_id", "batch_seq"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(40), nullable=False),  # 'cash', 'card_float', 'merchant_payable:42', ...
    Column("name", Text, nullable=False),
    Column("kind", String(10), nullable=False),  # asset | liability | income
    Column("merchant_id", BigInteger),
    UniqueConstraint("code", name="uq_accounts_code"),
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(12), nullable=False),  # load | batch | settlement | transfer
    Column("description", Text, nullable=False),
    Column("day", Date, nullable=False),  # the business day the entry belongs to (UTC)
    Column("batch_id", Integer, ForeignKey("batches.id")),
    Column("posted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_journal_entries_batch", "batch_id"),
)

postings = Table(
    "postings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("entry_id", Integer, ForeignKey("journal_entries.id"), nullable=False),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("debit", BigInteger, nullable=False, server_default="0"),
    Column("credit", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("debit >= 0 AND credit >= 0 AND (debit = 0 OR credit = 0)", name="one_side"),
    Index("ix_postings_entry", "entry_id"),
    Index("ix_postings_account", "account_id"),
)

settlements = Table(
    "settlements",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("merchant_id", BigInteger, nullable=False),
    Column("until", Date, nullable=False),  # records of days before this date are in it
    Column("purchase_count", BigInteger, nullable=False),
    Column("gross", BigInteger, nullable=False),
    Column("cancel_count", BigInteger, nullable=False),
    Column("cancellations", BigInteger, nullable=False),
    Column("fee_bps", Integer, nullable=False),
    Column("fee", BigInteger, nullable=False),
    Column("net", BigInteger, nullable=False),
    Column("entry_id", Integer, ForeignKey("journal_entries.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_settlements_merchant", "merchant_id", "until"),
)

records = Table(
    "records",
    metadata,
    # The key: the card's counter names one record for ever, and the card certifies it. Not the
    # terminal's sequence number: that counts within one terminal log, and a log that starts again
    # (docs/processing.md, "A terminal log that starts again") numbers from 1 anew. No surrogate id:
    # it cost PostgreSQL a sequence call and a B-tree per record (bulk COPY ~200k/s with it).
    Column("card_number", CardNumber, primary_key=True),
    Column("counter", BigInteger, primary_key=True, autoincrement=False),
    Column("record_type", SmallInteger, nullable=False),  # purse.protocol.RecordType
    Column("amount", BigInteger, nullable=False),
    Column("terminal_id", BigInteger, nullable=False),
    Column("terminal_seq", BigInteger, nullable=False),
    Column("day", Integer, nullable=False),  # card time // 86400: per-day reports group on it in any dialect
    Column("merchant_id", BigInteger),  # NULL for loads (the issuer's desk)
    # batch_id and entry_id reference batches and journal_entries. They are not declared as foreign
    # keys on purpose: PostgreSQL checks a foreign key with a trigger per row, which made a bulk COPY
    # three times slower (docs/performance.md); ``smartpurse check`` verifies every reference instead
    # (processing.check, "references"). Settlement does not touch this table: it stamps the per-batch
    # aggregates in ``sales``, so no index beyond the key, the entry's and the partial one of loads and
    # cash-outs below is paid for on every insert.
    Column("batch_id", Integer),  # NULL for loads taken from the loads table
    Column("entry_id", Integer, nullable=False),  # the journal entry that posted the record
    # The certified record, byte for byte: every other field (balance, points, time, UID, certificate)
    # is read from here (purse.records layout), so a row stays narrow and bulk inserts stay fast.
    Column("raw", LargeBinary(72), nullable=False),
    # By the entry that posted them: ``smartpurse check`` proves only the entries not proven before
    # (processing.check). Entry ids rise as batches come, so each insert lands at the index's right
    # edge, not at a random page as the card key does. Migration 0015.
    Index("ix_records_entry", "entry_id"),
    # The float's movements besides purchases and cancellations (those are in ``sales``), by card day: the
    # float report sums this index, not the records (a year of purchases leaves it untouched). It holds the
    # summed columns, so neither database reads the table; a purchase costs the index only the test of its
    # type. Migration 0017.
    Index("ix_records_loads_cash_outs", "day", "record_type", "amount",
          sqlite_where=LOADS_AND_CASH_OUTS, postgresql_where=LOADS_AND_CASH_OUTS),
)

checked_entries = Table(
    "checked_entries",
    metadata,
    # The journal entries ``smartpurse check`` proved against their records, with what their records
    # net to: the next check reads only the records of entries not here (``check --full`` reads all).
    # Records are never changed once stored, so a proven entry stays proven. Migration 0015.
    Column("entry_id", Integer, primary_key=True, autoincrement=False),
    Column("records", BigInteger, nullable=False),
    Column("records_net", BigInteger, nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

checked_cards = Table(
    "checked_cards",
    metadata,
    # Per card, what its records in proven entries net to: a check proves a touched card's shadow balance
    # from this and the card's new records, without reading its history again. Migration 0015.
    Column("card_number", CardNumber, primary_key=True),
    Column("records_net", BigInteger, nullable=False),
)

checked_sales = Table(
    "checked_sales",
    metadata,
    # What the records of each proven batch sum to per day, as ``sales`` has it: a check compares every
    # sales row (settlement stamps them later) with this instead of reading those records again.
    # Migration 0015.
    Column("batch_id", Integer, primary_key=True, autoincrement=False),
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("merchant_id", BigInteger),
    Column("terminal_id", BigInteger),
    Column("purchase_count", BigInteger, nullable=False),
    Column("purchase_total", BigInteger, nullable=False),
    Column("cancel_count", BigInteger, nullable=False),
    Column("cancel_total", BigInteger, nullable=False),
)

sales = Table(
    "sales",
    metadata,
    # Per batch and card day, the purchases and cancellations that batch newly posted: the general
    # ledger's view of a merchant's sales, with ``records`` as its sub-ledger. Settlement, the
    # settlement report and the dashboard read these few rows (one per batch and day) instead of
    # scanning records, so ``records`` needs no (merchant_id, day) index: that index cost ~15 % of
    # a SQLite bulk insert and more on PostgreSQL (docs/processing.md, "Sales aggregates").
    # ``smartpurse check`` proves every row equals the sum of its records (processing.check).
    Column("batch_id", Integer, ForeignKey("batches.id"), primary_key=True, autoincrement=False),
    Column("day", Integer, primary_key=True, autoincrement=False),  # card time // 86400, as records.day
    Column("merchant_id", BigInteger, nullable=False),  # the batch's merchant and terminal
    Column("terminal_id", BigInteger, nullable=False),
    Column("purchase_count", BigInteger, nullable=False),
    Column("purchase_total", BigInteger, nullable=False),
    Column("cancel_count", BigInteger, nullable=False),
    Column("cancel_total", BigInteger, nullable=False),
    Column("settlement_id", Integer, ForeignKey("settlements.id")),  # the statement that paid this row
    Index("ix_sales_merchant_day", "merchant_id", "day"),
    Index("ix_sales_settlement", "settlement_id"),
)

card_accounts = Table(
    "card_accounts",
    metadata,
    Column("card_number", CardNumber, primary_key=True),
    Column("balance", BigInteger, nullable=False),  # shadow balance: sum of this card's posted records
    Column("chain_counter", BigInteger, nullable=False),  # counters 1..chain_counter all present
    Column("chain_balance", BigInteger, nullable=False),  # balance after the record at chain_counter
    Column("chain_time", BigInteger, nullable=False),
    Column("max_counter", BigInteger, nullable=False),  # > chain_counter: a gap waits for late batches
    Column("gap_since", BigInteger),  # unix seconds when the current gap was first seen
    # Every import asks which gaps have been open too long (reconcile.open_gaps): only the cards with a gap,
    # a handful among millions, are in this index, so the question costs what the gaps are (migration 0012).
    Index("ix_card_accounts_gap_since", "gap_since", sqlite_where=text("gap_since IS NOT NULL"),
          postgresql_where=text("gap_since IS NOT NULL")),
    sqlite_with_rowid=False,  # one b-tree keyed by the card, not a rowid table and a key index (migration 0020)
    postgresql_with={"fillfactor": 70},  # room in each page, so a card's update stays in it (HOT; migration 0021)
)

card_points = Table(
    "card_points",
    metadata,
    Column("card_number", CardNumber, primary_key=True),
    Column("program_id", Integer, primary_key=True),
    Column("points", BigInteger, nullable=False),  # points after the card's chained record of this program
    Column("counter", BigInteger, nullable=False),
    # whether that record turned points into a prize (a purchase that won one, or the cancel of such a
    # purchase): a cancel gives back what its purchase took, to the prizes or to the lapsed (points_days)
    Column("won_prize", Boolean, nullable=False, server_default=false()),  # migration 0018
    sqlite_with_rowid=False,  # migration 0020
    postgresql_with={"fillfactor": 70},  # migration 0021
)

points_days = Table(
    "points_days",
    metadata,
    # Per card day and program, what the records did to the points on cards, counted where the card's chain
    # walks through each record (processing.reconcile), so each record once, in counter order. The points
    # report reads these rows, not records (migration 0018). ``held_change`` is each record's points after
    # less the points its card held before it on the chain: summed up to a day, the points the cards held
    # at its end; the other columns are the period's moves. ``smartpurse check --full`` proves the rows equal
    # the records walked again (processing.points_days).
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("program_id", Integer, primary_key=True, autoincrement=False),
    Column("earned", BigInteger, nullable=False),
    Column("redeemed", BigInteger, nullable=False),
    Column("lapsed", BigInteger, nullable=False),
    Column("to_prizes", BigInteger, nullable=False),
    Column("held_change", BigInteger, nullable=False),
)

card_days = Table(
    "card_days",
    metadata,
    # The card days on which each card was used (a purchase, cancellation or load posted): "cards used in
    # the period" counts these rows, not the records (processing.card_days). The key leads with the day, so a
    # period's rows lie together and each day's inserts fill pages of their own. Migration 0019.
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("card_number", CardNumber, primary_key=True),
    sqlite_with_rowid=False,  # migration 0020
)

# Where the points replay of each card stands (processing.importer, "_recompute_points"): the card's
# records 1..counter have been replayed, and ``state`` holds, per program, the program version it ran
# and the replay state (purse.loyalty.Replay, hex). The next batch replays only the card's new records
# instead of its whole history (migration 0013).
points_replay = Table(
    "points_replay",
    metadata,
    Column("card_number", CardNumber, primary_key=True),
    Column("counter", BigInteger, nullable=False),
    Column("state", JSON, nullable=False),
)

anomalies = Table(
    "anomalies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(24), nullable=False),
    Column("fingerprint", String(200), nullable=False),  # one anomaly is recorded once, however often seen
    Column("card_number", CardNumber),
    Column("counter", BigInteger),
    Column("terminal_id", BigInteger),
    Column("batch_id", Integer, ForeignKey("batches.id")),
    Column("detail", Text, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("fingerprint", name="uq_anomalies_fingerprint"),
    Index("ix_anomalies_card", "card_number"),
)

transfers_posted = Table(
    "transfers_posted",
    metadata,
    Column("transfer_key", String(80), primary_key=True),  # the registry's transfer, posted once
    Column("old_card", CardNumber, nullable=False),
    Column("new_card", CardNumber, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("entry_id", Integer, ForeignKey("journal_entries.id"), nullable=False),
    # True: the amount left card float for ``replacement_payable`` and reaches the new card as a load
    # at a desk (``smartpurse load NEW --transfer``; processing.transfers sets it). False: posted
    # before migration 0003, when the new card's shadow balance was credited directly.
    Column("to_chip", Boolean, nullable=False, server_default=false()),
)

hotlist_exports = Table(
    "hotlist_exports",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("created", BigInteger, nullable=False),
    Column("cards", BigInteger, nullable=False),
    Column("path", Text, nullable=False),
)


# The loyalty programs processing has verified (``process --programs``): their names, so reports and the
# dashboard say "Coffee Club", not "Program 17". Written from signed files only.
programs = Table(
    "programs",
    metadata,
    Column("program_id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    # Days without a visit after which the program's points lapse (0: never): holders are told before
    # (processing.holders.expiry). Migration 0010.
    Column("expiry_days", Integer, nullable=False, server_default="0"),
    # What the holder's page shows of the rules (docs/portal.md): the prize threshold and its text, and
    # the tiers as [name, minimum spend, discount in basis points]. Migration 0011.
    Column("prize_threshold", BigInteger, nullable=True),
    Column("prize_text", String(200), nullable=True),
    Column("tiers", JSON, nullable=True),
)


inbox_claims = Table(
    "inbox_claims",
    metadata,
    # Who is importing which file of a shared inbox (processing.inbox): one row per file content. A claim
    # not finished within its lease is taken over (its importer died); a finished one is the file's log.
    # Migration 0014.
    Column("sha256", String(64), primary_key=True),
    Column("file_name", String(255), nullable=False),
    Column("claimed_by", String(200), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("done_at", DateTime(timezone=True), nullable=True),
    Column("outcome", String(20), nullable=True),
)


processing_state = Table(
    "processing_state",
    metadata,
    # 'records_version': bumped by every transaction that stores records (processing.store). A process
    # that keeps card chain states in memory between its batches (reconcile.CardCache) knows them
    # current while the version is still the one its own last commit left.
    Column("name", String(40), primary_key=True),
    Column("value", BigInteger, nullable=False),
)


def money_effect_sql(record_type: ColumnElement[int], amount: ColumnElement[int]) -> ColumnElement[int]:
    """What a stored record does to the money on its card, in SQL: ``purse.records.money_effect``,
    built from the same ``MONEY_SIGN`` table (+ load and cancel, − purchase, 0 block)."""
    whens = [(record_type == kind, amount if sign > 0 else -amount) for kind, sign in MONEY_SIGN.items() if sign]
    return case(*whens, else_=literal(0))
