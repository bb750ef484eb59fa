"""card return: cash-outs, card deposits, the 'returned' card state

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 16:10:00

A holder may give the card back: the desk pays its balance out through the card (a certified
CASH_OUT record, kept in ``cash_outs``) and returns the deposit taken at issue (``card_deposits``);
the registry marks the card 'returned'. Processing posts both (docs/books.md, "Deposits and cash-out").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_STATES_BEFORE = "state IN ('issued', 'blocked', 'replaced')"
_STATES_AFTER = "state IN ('issued', 'blocked', 'replaced', 'returned')"


def _card_states(condition: str) -> None:
    # SQLite rebuilds ``cards`` for a new CHECK (processing.db runs migrations with its foreign keys off
    # and checks them after, the procedure SQLite documents for such changes).
    with op.batch_alter_table('cards', recreate='auto') as batch_op:
        batch_op.drop_constraint(op.f('ck_cards_state'), type_='check')
        batch_op.create_check_constraint('state', condition)


def upgrade() -> None:
    _card_states(_STATES_AFTER)
    op.create_table(
        'cash_outs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('card_number', sa.String(length=16).with_variant(sa.String(length=16, collation='C'),
                                                                    'postgresql'), nullable=False),
        sa.Column('counter', sa.BigInteger(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('terminal_id', sa.BigInteger(), nullable=False),
        sa.Column('terminal_seq', sa.BigInteger(), nullable=False),
        sa.Column('time', sa.BigInteger(), nullable=False),
        sa.Column('record', sa.LargeBinary(length=72), nullable=False),
        sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'),
                  nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_cash_outs')),
        sa.UniqueConstraint('card_number', name=op.f('uq_cash_outs_card_number')),
    )
    op.create_table(
        'card_deposits',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('card_number', sa.String(length=19).with_variant(sa.String(length=19, collation='C'),
                                                                    'postgresql'), nullable=False),
        sa.Column('move', sa.String(length=10), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'),
                  nullable=False),
        sa.Column('entry_id', sa.Integer(), nullable=True),
        sa.CheckConstraint("move IN ('taken', 'refunded')", name=op.f('ck_card_deposits_move')),
        sa.CheckConstraint('amount > 0', name=op.f('ck_card_deposits_amount')),
        sa.ForeignKeyConstraint(['card_number'], ['cards.number'], name=op.f('fk_card_deposits_card_number_cards')),
        sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'],
                                name=op.f('fk_card_deposits_entry_id_journal_entries')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_card_deposits')),
        sa.UniqueConstraint('card_number', 'move', name='uq_card_deposits_card_move'),
    )


def downgrade() -> None:
    op.drop_table('card_deposits')
    op.drop_table('cash_outs')
    op.execute("UPDATE cards SET state = 'blocked' WHERE state = 'returned'")
    _card_states(_STATES_BEFORE)
