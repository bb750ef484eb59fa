"""merchants: legal name, tax number, bank details and payout schedule

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 13:50:00

Merchants were "Merchant N" with a fee: no counterparty an accountant could pay. From this
revision a merchant carries its legal name, tax number (INN), bank details (a Russian BIC and
account, or an IBAN and BIC), and a payout schedule; ``smartpurse merchants`` edits them and
``smartpurse payouts`` writes the payment files a bank imports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_COLUMNS = (
    ('legal_name', sa.String(length=300)),
    ('tax_number', sa.String(length=12)),
    ('bank_name', sa.String(length=200)),
    ('bank_bic', sa.String(length=11)),
    ('bank_account', sa.String(length=34)),
    ('iban', sa.String(length=34)),
)


# Plain ALTER TABLE ADD/DROP COLUMN on both databases (SQLite has dropped columns since 3.35): a batch
# operation would rebuild ``merchants`` on SQLite, which the terminals' foreign key refuses.


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column('merchants', sa.Column(name, kind, nullable=True))
    op.add_column('merchants', sa.Column('payout_schedule', sa.String(length=10), nullable=False,
                                         server_default='monthly'))


def downgrade() -> None:
    for name in ('payout_schedule', *reversed([n for n, _ in _COLUMNS])):
        op.execute(f'ALTER TABLE merchants DROP COLUMN {name}')
