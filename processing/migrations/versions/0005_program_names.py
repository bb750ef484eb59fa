"""programs: the names of the loyalty programs processing verified

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 11:45:00

Reports and the dashboard named programs only by id ("Program 17"). ``smartpurse process``
verifies the signed program files it replays points with; from this revision it also keeps
each one's name and version, and the points report prints the name.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'programs',
        sa.Column('program_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('program_id', name=op.f('pk_programs')),
    )


def downgrade() -> None:
    op.drop_table('programs')
