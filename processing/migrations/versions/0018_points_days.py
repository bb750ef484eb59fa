"""points_days: what the records did to the points on cards per day and program; card_points.won_prize

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 09:30:00

The points report summed every purchase of the history to find the points on cards at a period's opening
and closing and the period's moves: 56 s at 20,000,000 records. ``points_days`` holds them per card day
and program, counted where the card chains walk through the records (processing.points_days); the report
reads those rows. ``card_points.won_prize`` keeps whether a card's last record of a program won a prize, so
that a cancel in a later batch gives back what its purchase took to the right column.

The upgrade walks every record the chains have walked already (counters up to each card's head) once, in
counter order, as the importer would have counted them: O(records), 9.6-11.0 s at 2,000,000 records on
PostgreSQL (docs/performance.md, fifth round).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from processing.points_days import recount

    op.create_table(
        'points_days',
        sa.Column('day', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('program_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('earned', sa.BigInteger(), nullable=False),
        sa.Column('redeemed', sa.BigInteger(), nullable=False),
        sa.Column('lapsed', sa.BigInteger(), nullable=False),
        sa.Column('to_prizes', sa.BigInteger(), nullable=False),
        sa.Column('held_change', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'program_id'),
    )
    with op.batch_alter_table('card_points') as batch:
        batch.add_column(sa.Column('won_prize', sa.Boolean(), server_default=sa.false(), nullable=False))
    conn = op.get_bind()
    moved, won = recount(conn)
    if moved:
        conn.execute(sa.text("INSERT INTO points_days (day, program_id, earned, redeemed, lapsed, to_prizes, "
                             "held_change) VALUES (:day, :program, :earned, :redeemed, :lapsed, :to_prizes, :held)"),
                     [{"day": day, "program": program, "earned": row[0], "redeemed": row[1], "lapsed": row[2],
                       "to_prizes": row[3], "held": row[4]} for (day, program), row in sorted(moved.items())])
    prized = [{"card": card, "program": program} for (card, program), flag in sorted(won.items()) if flag]
    if prized:
        conn.execute(sa.text("UPDATE card_points SET won_prize = TRUE WHERE card_number = :card "
                             "AND program_id = :program"), prized)


def downgrade() -> None:
    with op.batch_alter_table('card_points') as batch:
        batch.drop_column('won_prize')
    op.drop_table('points_days')
