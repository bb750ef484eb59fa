"""The issuer's desk at card return: the cash-outs it paid, and the card deposits taken and given back.

Like ``loads``, these are written where the money changes hands (``cards issue`` takes a deposit,
``smartpurse cash-out`` pays a returned card's balance and deposit out) and posted by processing
once, Dr/Cr cash against the card float and the deposits liability (docs/books.md, "Deposits and
cash-out").
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    false,
    func,
)

from processing.schema import CardNumber, RegistryCardNumber, metadata


class DepositMove(StrEnum):
    """Which way a card deposit's money went."""

    TAKEN = "taken"  # at issue: the holder paid it
    REFUNDED = "refunded"  # at card return: the desk gave it back


DEPOSIT_MOVES = tuple(m.value for m in DepositMove)

# One row per returned card: the card's certified CASH_OUT record (its balance paid out).
cash_outs = Table(
    "cash_outs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("card_number", CardNumber, nullable=False, unique=True),  # a card is returned once
    Column("counter", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),  # the balance the card paid out
    Column("terminal_id", BigInteger, nullable=False),
    Column("terminal_seq", BigInteger, nullable=False),
    Column("time", BigInteger, nullable=False),  # unix seconds, as on the card
    Column("record", LargeBinary(72), nullable=False),  # the certified record, raw
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("posted", Boolean, nullable=False, server_default=false()),  # as ``loads.posted``
    Index("ix_cash_outs_unposted", "card_number", "counter", sqlite_where=Column("posted") == false(),
          postgresql_where=Column("posted") == false()),
)

# A card's deposit: taken once at issue, refunded once at return. ``entry_id`` is set when
# processing posts it, so each is posted exactly once.
card_deposits = Table(
    "card_deposits",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("card_number", RegistryCardNumber, ForeignKey("cards.number"), nullable=False),
    Column("move", String(10), nullable=False),
    Column("amount", BigInteger, nullable=False),  # minor units, positive either way
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("entry_id", Integer, ForeignKey("journal_entries.id"), nullable=True),
    UniqueConstraint("card_number", "move", name="uq_card_deposits_card_move"),
    CheckConstraint(f"move IN {DEPOSIT_MOVES!r}", name="move"),
    CheckConstraint("amount > 0", name="amount"),
)
