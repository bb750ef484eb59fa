"""programs: the days without a visit after which their points lapse

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 16:35:18

Processing keeps each verified program's points expiry, so the delivery worker can tell holders
before their points lapse without opening the signed program files (processing.holders.expiry).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expiry_days', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('programs', schema=None) as batch_op:
        batch_op.drop_column('expiry_days')
