"""The issuer's own record of every load made at its credit desks.

``smartpurse load`` writes here, with the card's certificate, at the moment of the
load (the desk is the issuer's, so it is online); processing matches the LOAD records
that come back from cards against this table (docs/design.md, "Reconcile").
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Table,
    UniqueConstraint,
    false,
    func,
)

from processing.schema import CardNumber, metadata

loads = Table(
    "loads",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("card_number", CardNumber, nullable=False, index=True),
    Column("counter", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("terminal_id", BigInteger, nullable=False),
    Column("terminal_seq", BigInteger, nullable=False),
    Column("time", BigInteger, nullable=False),  # unix seconds, as on the card
    Column("record", LargeBinary(72), nullable=False),  # the certified record, raw
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set when the load paid a replacement transfer onto the new card (``smartpurse load --transfer``):
    # no cash came in, so processing posts it against ``replacement_payable``. Once per transfer.
    Column("transfer_id", Integer, ForeignKey("card_transfers.id"), nullable=True),
    # Set once processing has its record in ``records`` (processing.desk_posting): each pass reads the
    # loads still to post through the partial index, not every load ever made.
    Column("posted", Boolean, nullable=False, server_default=false()),
    Index("ix_loads_unposted", "card_number", "counter", sqlite_where=Column("posted") == false(),
          postgresql_where=Column("posted") == false()),
    UniqueConstraint("card_number", "counter", name="uq_loads_card_counter"),
    UniqueConstraint("transfer_id", name="uq_loads_transfer_id"),
)
