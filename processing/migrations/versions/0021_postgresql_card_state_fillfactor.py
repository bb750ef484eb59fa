"""PostgreSQL: card_accounts and card_points leave room in their pages (fillfactor 70)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 19:30:00

The import updates the row of every card a group touches. PostgreSQL writes an updated row as a new version;
when the version fits in the same page and no indexed column changed, the update is HOT (heap-only): no new
entry in the primary key's index, less to write ahead. With every page full (the default fillfactor, 100)
the new version goes to another page and the key index gains an entry for it. Measured on the city day
(250 batches of 400 records, 50,000 of 100,000 cards): 38 % of the card account updates were HOT with full
pages and 57 % with fillfactor 70 (the others change ``gap_since``, which the open-gaps index holds); the
day's import alone took 2.90-2.99 s against 3.10-3.36 s, a difference the benchmark's spread hides
(docs/performance.md, "Eighth round").

The setting applies to pages written from now on: the rows stored already stay packed until the table is
rewritten (``VACUUM FULL card_accounts``, which locks it; docs/operations.md). SQLite has no such setting
(and no row versions): nothing changes there.
"""

from __future__ import annotations

from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

TABLES = ('card_accounts', 'card_points')


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in TABLES:
            op.execute(f'ALTER TABLE {table} SET (fillfactor = 70)')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in TABLES:
            op.execute(f'ALTER TABLE {table} RESET (fillfactor)')
