"""sales aggregates per batch and day; records lose the settlement index and column, and their surrogate id;
card numbers collate "C"

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:00:00

Settlement used to find and stamp unsettled records through the index
``ix_records_merchant_day``, which cost every bulk insert into ``records`` a B-tree insert
per record (~15 % of a SQLite import, more on PostgreSQL). Settlement now reads and
stamps ``sales``: one row per (batch, card day) of the purchases and cancellations the
batch posted. The upgrade fills ``sales`` from the records, carrying each group's
settlement over, and refuses (changing nothing) when a (batch, day) is not uniform in
merchant, terminal or settlement. On PostgreSQL every card-number column gets collation
"C" (byte order: the unique (card_number, counter) index no longer calls strcoll). The
downgrade puts ``records.settlement_id`` and the index back, from ``sales``.

``records`` also loses its surrogate ``id``: (terminal_id, terminal_seq), unique already,
becomes the primary key. On PostgreSQL the id cost a sequence call and a third B-tree per
record (bulk COPY ~200k/s with it, ~230-260k/s without). The card-state cache that used
the highest id as its token uses ``processing_state.records_version`` instead, counted by
every transaction that stores records. The downgrade numbers the records again in key order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# Every column that holds a card number, by table: (column, length). One collation for all,
# or PostgreSQL refuses to compare two of them.
_CARD_NUMBER_COLUMNS = {
    "records": [("card_number", 16)],
    "card_accounts": [("card_number", 16)],
    "card_points": [("card_number", 16)],
    "anomalies": [("card_number", 16)],
    "loads": [("card_number", 16)],
    "transfers_posted": [("old_card", 16), ("new_card", 16)],
    "card_numbers": [("number", 19)],
    "cards": [("number", 19), ("replaced_by", 19), ("replaces", 19)],
    "card_transfers": [("from_number", 19), ("to_number", 19)],
}

_EVIDENCE = 20


def _set_collation(collate: str) -> None:
    """One ALTER TABLE per table (its indexes are rebuilt once); ``collate`` '' means the default."""
    clause = f' COLLATE "{collate}"' if collate else ""
    for table, columns in _CARD_NUMBER_COLUMNS.items():
        op.execute(f"ALTER TABLE {table} " + ", ".join(
            f"ALTER COLUMN {name} TYPE VARCHAR({length}){clause}" for name, length in columns))


def _refuse_mixed_groups(conn: sa.Connection) -> None:
    """Each (batch, day) of sales must name one merchant, one terminal and one settlement (or none).

    ``smartpurse settle`` stamps every unsettled record of a merchant's days before ``until``,
    so this holds for any database it wrote; a database edited by hand may break it, and then
    the migration stops with the evidence instead of settling anything twice or never."""
    mixed = conn.execute(sa.text(
        "SELECT r.batch_id, r.day, COUNT(*), COUNT(DISTINCT r.merchant_id), COUNT(DISTINCT r.terminal_id), "
        "COUNT(DISTINCT r.settlement_id), COUNT(r.settlement_id), COUNT(b.id) "
        "FROM records r LEFT JOIN batches b ON b.id = r.batch_id AND b.status = 'accepted' "
        "WHERE r.batch_id IS NOT NULL AND r.record_type IN (2, 3) GROUP BY r.batch_id, r.day "
        "HAVING COUNT(r.merchant_id) != COUNT(*) OR COUNT(DISTINCT r.merchant_id) != 1 "
        "OR COUNT(DISTINCT r.terminal_id) != 1 OR COUNT(DISTINCT r.settlement_id) > 1 "
        "OR (COUNT(r.settlement_id) != 0 AND COUNT(r.settlement_id) != COUNT(*)) OR COUNT(b.id) != COUNT(*) "
        f"ORDER BY r.batch_id, r.day LIMIT {_EVIDENCE}")).all()
    orphans = conn.execute(sa.text(
        "SELECT COUNT(*) FROM records WHERE batch_id IS NULL AND record_type IN (2, 3)")).scalar_one()
    if mixed or orphans:
        from processing.db import DatabaseError

        groups = "; ".join(f"batch {b} day {d}: {n} records, {m} merchants, {t} terminals, {s} settlements, "
                           f"{stamped} settled, {accepted} in an accepted batch"
                           for b, d, n, m, t, s, stamped, accepted in mixed)
        raise DatabaseError("cannot migrate to per-batch sales: "
                            + (f"{orphans} purchase/cancel records have no batch; " if orphans else "")
                            + (f"(batch, day) groups not uniform: {groups}" if groups else "")
                            + " — repair these records (smartpurse check) and open the database again")


def upgrade() -> None:
    conn = op.get_bind()
    _refuse_mixed_groups(conn)  # before any change: a refusal leaves the database as it was, whatever the
    # driver does with DDL inside a transaction (pysqlite does not open one for it)
    op.create_table(
        'sales',
        sa.Column('batch_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('day', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('merchant_id', sa.BigInteger(), nullable=False),
        sa.Column('terminal_id', sa.BigInteger(), nullable=False),
        sa.Column('purchase_count', sa.BigInteger(), nullable=False),
        sa.Column('purchase_total', sa.BigInteger(), nullable=False),
        sa.Column('cancel_count', sa.BigInteger(), nullable=False),
        sa.Column('cancel_total', sa.BigInteger(), nullable=False),
        sa.Column('settlement_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_sales_batch_id_batches')),
        sa.ForeignKeyConstraint(['settlement_id'], ['settlements.id'], name=op.f('fk_sales_settlement_id_settlements')),
        sa.PrimaryKeyConstraint('batch_id', 'day', name=op.f('pk_sales')),
    )
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.create_index('ix_sales_merchant_day', ['merchant_id', 'day'], unique=False)
        batch_op.create_index('ix_sales_settlement', ['settlement_id'], unique=False)

    conn.execute(sa.text(
        "INSERT INTO sales (batch_id, day, merchant_id, terminal_id, purchase_count, purchase_total, "
        "cancel_count, cancel_total, settlement_id) "
        "SELECT batch_id, day, MIN(merchant_id), MIN(terminal_id), "
        "SUM(CASE WHEN record_type = 2 THEN 1 ELSE 0 END), SUM(CASE WHEN record_type = 2 THEN amount ELSE 0 END), "
        "SUM(CASE WHEN record_type = 3 THEN 1 ELSE 0 END), SUM(CASE WHEN record_type = 3 THEN amount ELSE 0 END), "
        "MIN(settlement_id) FROM records WHERE batch_id IS NOT NULL AND record_type IN (2, 3) "
        "GROUP BY batch_id, day"))

    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.drop_index('ix_records_merchant_day')
        batch_op.drop_column('settlement_id')
        batch_op.drop_constraint('uq_records_terminal_seq', type_='unique')
        batch_op.drop_constraint('pk_records', type_='primary')
        batch_op.drop_column('id')
        batch_op.create_primary_key('pk_records', ['terminal_id', 'terminal_seq'])
    op.create_table(
        'processing_state',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('value', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_processing_state')),
    )
    conn.execute(sa.text("INSERT INTO processing_state (name, value) VALUES ('records_version', 1)"))

    if conn.dialect.name == "postgresql":
        _set_collation("C")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        _set_collation("")
    op.drop_table('processing_state')
    if conn.dialect.name == "postgresql":  # a bigint id from a sequence, numbered in key order
        op.execute("ALTER TABLE records DROP CONSTRAINT pk_records")
        op.execute("ALTER TABLE records ADD COLUMN id BIGSERIAL")
        op.execute("ALTER TABLE records ADD CONSTRAINT pk_records PRIMARY KEY (id)")
        op.execute("ALTER TABLE records ADD CONSTRAINT uq_records_terminal_seq UNIQUE (terminal_id, terminal_seq)")
    else:  # SQLite: the table is rebuilt; INTEGER PRIMARY KEY numbers the copied rows
        with op.batch_alter_table('records', schema=None, recreate='always') as batch_op:
            batch_op.drop_constraint('pk_records', type_='primary')
            batch_op.add_column(sa.Column('id', sa.Integer(), nullable=True))
            batch_op.create_primary_key('pk_records', ['id'])
            batch_op.create_unique_constraint('uq_records_terminal_seq', ['terminal_id', 'terminal_seq'])
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('settlement_id', sa.Integer(), nullable=True))
    conn.execute(sa.text(
        "UPDATE records SET settlement_id = (SELECT s.settlement_id FROM sales s "
        "WHERE s.batch_id = records.batch_id AND s.day = records.day) "
        "WHERE batch_id IS NOT NULL AND record_type IN (2, 3)"))
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.create_index('ix_records_merchant_day', ['merchant_id', 'day'], unique=False)
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_index('ix_sales_settlement')
        batch_op.drop_index('ix_sales_merchant_day')
    op.drop_table('sales')
