"""records keyed by (card, counter); batches.log_id: a terminal log that starts again loses nothing

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:00:00

Until now ``records`` was keyed by (terminal, terminal sequence), and a terminal whose log
started again (a new file after a lost one) numbered its sales from 1 again: each genuine
sale collided with an old one and was never posted. Sequence numbers count within one log,
and from batch format 2 every batch names its log (``batches.log_id``). The key of a record
is now the card's (card number, counter), unique already and certified by the card; the
terminal sequence becomes a plain column. Batches imported before belong to each terminal's
first log (``log_id`` = eight zero bytes, what a format 1 header implies).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

FIRST_LOG_ID = bytes(8)


def upgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('log_id', sa.LargeBinary(length=8), nullable=True))
    conn.execute(sa.text("UPDATE batches SET log_id = :first WHERE terminal_id IS NOT NULL"),
                 {"first": FIRST_LOG_ID})
    if conn.dialect.name == "postgresql":  # one index instead of two: the key's is built once, here
        op.execute("ALTER TABLE records DROP CONSTRAINT pk_records")
        op.execute("ALTER TABLE records DROP CONSTRAINT uq_records_card_counter")
        op.execute("ALTER TABLE records ADD CONSTRAINT pk_records PRIMARY KEY (card_number, counter)")
    else:  # SQLite: the table is rebuilt with the new key
        with op.batch_alter_table('records', schema=None, recreate='always') as batch_op:
            batch_op.drop_constraint('uq_records_card_counter', type_='unique')
            batch_op.drop_constraint('pk_records', type_='primary')
            batch_op.create_primary_key('pk_records', ['card_number', 'counter'])


def downgrade() -> None:
    conn = op.get_bind()
    restarted = conn.execute(sa.text("SELECT COUNT(DISTINCT terminal_id) FROM batches "
                                     "WHERE log_id IS NOT NULL AND log_id <> :first"),
                             {"first": FIRST_LOG_ID}).scalar_one()
    if restarted:  # their records may share terminal sequence numbers, which 0003's key refuses
        raise RuntimeError(f"{restarted} terminals sent batches from a log other than their first; 0003 keys "
                           "records by terminal sequence and cannot hold them: downgrade refused")
    if conn.dialect.name == "postgresql":
        op.execute("ALTER TABLE records DROP CONSTRAINT pk_records")
        op.execute("ALTER TABLE records ADD CONSTRAINT uq_records_card_counter UNIQUE (card_number, counter)")
        op.execute("ALTER TABLE records ADD CONSTRAINT pk_records PRIMARY KEY (terminal_id, terminal_seq)")
    else:
        with op.batch_alter_table('records', schema=None, recreate='always') as batch_op:
            batch_op.drop_constraint('pk_records', type_='primary')
            batch_op.create_primary_key('pk_records', ['terminal_id', 'terminal_seq'])
            batch_op.create_unique_constraint('uq_records_card_counter', ['card_number', 'counter'])
    op.execute("ALTER TABLE batches DROP COLUMN log_id")  # in place: SQLite would rebuild a referenced table
