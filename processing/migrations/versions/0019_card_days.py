"""card_days: the days each card was used, so "cards used in the period" does not scan the records

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 14:00:00

The cards report and the payback counted the distinct cards of the period's records: a scan of every
record (no index of ``records`` leads with the day). ``card_days`` holds one row per card and day on which
a purchase, a cancellation or a load was posted on it, written by the import (processing.card_days); the
reports count its rows. The upgrade reads every record once to fill it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

# PURCHASE (2), CANCEL (3), LOAD (1), purse.protocol.RecordType, as literals: a migration keeps the values
# of its day (processing.card_days.USES).
USES = "record_type IN (1, 2, 3)"


def upgrade() -> None:
    op.create_table(
        'card_days',
        sa.Column('day', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('card_number', sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql'),
                  nullable=False),
        sa.PrimaryKeyConstraint('day', 'card_number', name=op.f('pk_card_days')),
    )
    op.execute(f"INSERT INTO card_days (day, card_number) SELECT DISTINCT day, card_number FROM records "
               f"WHERE {USES}")


def downgrade() -> None:
    op.drop_table('card_days')
