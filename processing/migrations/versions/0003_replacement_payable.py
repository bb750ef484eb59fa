"""replacement transfers reach the new chip: loads.transfer_id, transfers_posted.to_chip

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 23:40:00

Until now a replacement transfer credited the new card's shadow balance, but nothing put the
money on the new chip. From this revision a transfer moves the old card's value from card
float to ``replacement_payable`` (processing.transfers), and the desk pays it onto the new
card as a load (``smartpurse load NEW --transfer``) whose ``loads.transfer_id`` tells
processing to post it against that payable instead of cash. Transfers posted before keep
``to_chip`` false: their value is already in the new card's shadow balance.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('loads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transfer_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(op.f('fk_loads_transfer_id_card_transfers'), 'card_transfers', ['transfer_id'],
                                    ['id'])
        batch_op.create_unique_constraint('uq_loads_transfer_id', ['transfer_id'])
    with op.batch_alter_table('transfers_posted', schema=None) as batch_op:
        batch_op.add_column(sa.Column('to_chip', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    conn = op.get_bind()
    paid = conn.execute(sa.text("SELECT COUNT(*) FROM transfers_posted WHERE to_chip")).scalar_one()
    if paid:  # their value is in replacement_payable and on chips: 0002 has no way to say so
        raise RuntimeError(f"{paid} replacement transfers were posted to reach the new chip; 0002 cannot hold "
                           "them: downgrade refused")
    with op.batch_alter_table('transfers_posted', schema=None) as batch_op:
        batch_op.drop_column('to_chip')
    with op.batch_alter_table('loads', schema=None) as batch_op:
        batch_op.drop_constraint('uq_loads_transfer_id', type_='unique')
        batch_op.drop_constraint(op.f('fk_loads_transfer_id_card_transfers'), type_='foreignkey')
        batch_op.drop_column('transfer_id')
