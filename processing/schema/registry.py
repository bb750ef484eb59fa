"""The card registry: holders, cards, card numbers, replacements, terminals, merchants.

Personalization writes these tables; processing reads them (blocked cards for the
hotlist, terminals' log key versions for batch verification, merchants' fees for
settlement). Card numbers are allocated here, in the database, so that no number is
ever issued twice, whatever crashes or how many ``cards issue`` processes run at once
(docs/personalization.md, "Card numbers").
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    func,
)

from processing.schema import RegistryCardNumber, metadata


class CardStatus(StrEnum):
    """A card in the registry (not the chip's own state, ``purse.protocol.CardState``)."""

    ISSUED = "issued"
    BLOCKED = "blocked"  # lost or stolen: the next hotlist carries it to every terminal
    REPLACED = "replaced"  # blocked for good; its value moves to the card that replaced it
    RETURNED = "returned"  # given back at the desk: its balance (and deposit) paid out in cash


class NumberStatus(StrEnum):
    """A card number's allocation: reserved by a batch, then issued on a card or voided."""

    RESERVED = "reserved"
    ISSUED = "issued"
    VOID = "void"


CARD_STATES = tuple(s.value for s in CardStatus)
NUMBER_STATES = tuple(s.value for s in NumberStatus)

holders = Table(
    "holders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("phone", String(20), nullable=True),
    Column("email", String(254), nullable=True, unique=True),  # lower-cased: the holder's identity
    Column("language", String(5), nullable=True),  # what the issuer writes to them in: "en", "ru" [issuer locale]
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# One row per issuer identification number: the next account sequence to hand out.
# ``UPDATE … SET next_seq = next_seq + n … RETURNING`` takes a row lock (PostgreSQL) or
# the write lock (SQLite), so concurrent allocators get disjoint blocks.
number_counters = Table(
    "number_counters",
    metadata,
    Column("iin", String(12), primary_key=True),
    Column("next_seq", BigInteger, nullable=False),
)

# Every number ever allocated, reserved in the same transaction that moved the counter,
# so a crash between allocation and issuing leaves the number findable (a resumed batch
# uses it) rather than lost; a number that may sit on an unregistered card is 'void'.
card_numbers = Table(
    "card_numbers",
    metadata,
    Column("number", RegistryCardNumber, primary_key=True),
    Column("batch", String(100), nullable=False),
    Column("batch_index", Integer, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),  # > 0 after an earlier number was voided
    Column("uid", LargeBinary(7), nullable=True),
    Column("holder_id", Integer, ForeignKey("holders.id"), nullable=True),
    Column("state", String(10), nullable=False, server_default="reserved"),
    Column("note", String(200), nullable=True),
    Column("reserved_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("batch", "batch_index", "attempt", name="uq_card_numbers_batch_index"),
    CheckConstraint(f"state IN {NUMBER_STATES!r}", name="state"),
)

issue_batches = Table(
    "issue_batches",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("requested", Integer, nullable=False),
    Column("source", String(300), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

cards = Table(
    "cards",
    metadata,
    Column("number", RegistryCardNumber, primary_key=True),
    Column("uid", LargeBinary(7), nullable=False, unique=True),
    Column("holder_id", Integer, ForeignKey("holders.id"), nullable=True, index=True),
    Column("key_version", Integer, nullable=False),
    Column("program", Integer, nullable=True),
    Column("tier", Integer, nullable=True),
    Column("currency", Integer, nullable=False),
    Column("max_balance", BigInteger, nullable=False),
    Column("expiry", BigInteger, nullable=False),  # unix seconds, as on the card
    Column("issued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("state", String(10), nullable=False, server_default="issued", index=True),
    Column("blocked_at", DateTime(timezone=True), nullable=True),
    Column("block_reason", String(200), nullable=True),
    Column("replaced_by", RegistryCardNumber, nullable=True),
    Column("replaces", RegistryCardNumber, nullable=True, unique=True),
    Column("batch", String(100), nullable=True),
    Column("image", String(500), nullable=True),  # virtual card image path, or
    Column("reader", String(200), nullable=True),  # the PC/SC reader it was written in
    CheckConstraint(f"state IN {CARD_STATES!r}", name="state"),
)

# A replaced card's balance and points move to its replacement. Personalization records
# the intent; processing fills ``amount``/``points`` and ``credited_at`` once the old
# card's last batches are in, so nothing spent on the old card is credited twice.
card_transfers = Table(
    "card_transfers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("from_number", RegistryCardNumber, ForeignKey("cards.number"), nullable=False, unique=True),
    Column("to_number", RegistryCardNumber, ForeignKey("cards.number"), nullable=False, unique=True),
    Column("reason", String(200), nullable=True),
    Column("balance_on_card", BigInteger, nullable=True),  # read from the old card when it was presented
    Column("amount", BigInteger, nullable=True),  # set by processing: the shadow balance credited
    Column("points", BigInteger, nullable=True),  # set by processing
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("credited_at", DateTime(timezone=True), nullable=True),
)

merchants = Table(
    "merchants",
    metadata,
    Column("merchant_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("fee_bps", Integer, nullable=False),  # settlement fee in basis points
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The counterparty (migration 0006): who is paid, and where (personalization.counterparty checks it).
    Column("legal_name", String(300), nullable=True),
    Column("tax_number", String(12), nullable=True),  # INN: 10 digits (a company) or 12 (a person)
    Column("bank_name", String(200), nullable=True),
    Column("bank_bic", String(11), nullable=True),  # a Russian BIC (9 digits) or a SWIFT BIC with an IBAN
    Column("bank_account", String(34), nullable=True),  # the 20-digit Russian settlement account
    Column("iban", String(34), nullable=True),  # for a bank outside Russia (pain.001)
    Column("payout_schedule", String(10), nullable=False, server_default="monthly"),  # daily | weekly | monthly
)

terminals = Table(
    "terminals",
    metadata,
    Column("terminal_id", BigInteger, primary_key=True, autoincrement=False),
    Column("merchant_id", BigInteger, ForeignKey("merchants.merchant_id"), nullable=False, index=True),
    Column("name", String(200), nullable=True),
    Column("log_key_version", Integer, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
