"""A partial index of the loads and cash-outs by card day: the float report reads it and ``sales``, not records

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 19:00:00

The float report summed every record by day: a full scan of ``records``, seconds at a year of a network's
purchases. Purchases and cancellations per day are in ``sales`` already (proven equal to their records by
``smartpurse check``); what the float needs besides are the loads and cash-outs, a few among the records.
This index holds just those, with the columns the report sums, so the report reads it alone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


# LOAD (1) and CASH_OUT (5), purse.protocol.RecordType, as a literal (processing.schema.processing, there
# LOADS_AND_CASH_OUTS): a migration keeps the values of its day.
LOADS_AND_CASH_OUTS = sa.text("record_type IN (1, 5)")


def upgrade() -> None:
    op.create_index('ix_records_loads_cash_outs', 'records', ['day', 'record_type', 'amount'], unique=False,
                    sqlite_where=LOADS_AND_CASH_OUTS, postgresql_where=LOADS_AND_CASH_OUTS)


def downgrade() -> None:
    op.drop_index('ix_records_loads_cash_outs', table_name='records')
