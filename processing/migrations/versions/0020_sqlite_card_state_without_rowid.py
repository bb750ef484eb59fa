"""SQLite: card_accounts, card_points and card_days as WITHOUT ROWID tables

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 19:00:00

The import reads and writes these three tables by their primary key, card by card, for every card a batch
touches: an UPDATE of ``card_accounts`` per card, an INSERT OR IGNORE of ``card_days`` per card and day. In
a SQLite table with a rowid the primary key is a second b-tree beside the table's own, so each write
changes two trees, and each read goes through the key's tree to find the rowid and then the row. A
WITHOUT ROWID table is one b-tree keyed by the primary key: one tree to read and write, and fewer pages to
commit. Nothing reads these tables' rowids. Measured at 200,000 cards, groups of 16,000 cards: the UPDATE
121-141 ms -> 99-112 ms, the INSERT OR IGNORE 34-39 -> 29-34 ms, the commit 45-55 -> 31-35 ms
(docs/performance.md, "Eighth round").

PostgreSQL has no rowid (its heap plus primary-key index is what it is): nothing changes there. On
SQLite each table is rebuilt (created anew, copied, the old one dropped, the new one renamed), in the
migration's transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def _card_number() -> sa.types.TypeEngine[str]:
    return sa.String(length=16)  # SQLite: the "C" collation of migration 0002 is PostgreSQL's alone


def _tables() -> list[tuple[str, list[sa.Column[object]], list[str]]]:
    """(name, columns, primary key) of the three tables as migration 0019 left them."""
    return [
        ('card_accounts', [
            sa.Column('card_number', _card_number(), nullable=False),
            sa.Column('balance', sa.BigInteger(), nullable=False),
            sa.Column('chain_counter', sa.BigInteger(), nullable=False),
            sa.Column('chain_balance', sa.BigInteger(), nullable=False),
            sa.Column('chain_time', sa.BigInteger(), nullable=False),
            sa.Column('max_counter', sa.BigInteger(), nullable=False),
            sa.Column('gap_since', sa.BigInteger(), nullable=True),
        ], ['card_number']),
        ('card_points', [
            sa.Column('card_number', _card_number(), nullable=False),
            sa.Column('program_id', sa.Integer(), nullable=False),
            sa.Column('points', sa.BigInteger(), nullable=False),
            sa.Column('counter', sa.BigInteger(), nullable=False),
            sa.Column('won_prize', sa.Boolean(), server_default=sa.false(), nullable=False),
        ], ['card_number', 'program_id']),
        ('card_days', [
            sa.Column('day', sa.Integer(), autoincrement=False, nullable=False),
            sa.Column('card_number', _card_number(), nullable=False),
        ], ['day', 'card_number']),
    ]


def _rebuild(with_rowid: bool) -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    for name, columns, key in _tables():
        names = ', '.join(c.name for c in columns)
        op.create_table(f'_new_{name}', *columns, sa.PrimaryKeyConstraint(*key, name=f'pk_{name}'),
                        sqlite_with_rowid=with_rowid)
        op.execute(f'INSERT INTO _new_{name} ({names}) SELECT {names} FROM {name}')
        op.drop_table(name)
        op.rename_table(f'_new_{name}', name)
    # dropped with the old card_accounts (migration 0012)
    op.create_index('ix_card_accounts_gap_since', 'card_accounts', ['gap_since'],
                    sqlite_where=sa.text('gap_since IS NOT NULL'))


def upgrade() -> None:
    _rebuild(with_rowid=False)


def downgrade() -> None:
    _rebuild(with_rowid=True)
