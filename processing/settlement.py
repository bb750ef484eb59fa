"""Merchant settlement: pay each merchant its posted sales up to a date, less the fee.

A settlement statement covers every posted purchase and cancellation of the merchant
whose card time falls before ``until`` (UTC days) and that no earlier statement
covered. It reads the per-batch daily aggregates in ``sales`` (processing.sales), not
the records, and stamps those rows with the statement, so settling again pays nothing
twice and ``records`` needs no index for it. Journal: Dr merchant payable (sales net of
cancellations) / Cr bank (net paid) / Cr fee income (fee). The fee is ``fee_bps`` basis
points of the net sales, rounded half up to the minor unit; integers only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from processing import ledger
from processing.locks import import_transaction
from processing.schema.processing import sales, settlements
from processing.schema.registry import merchants

EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class Statement:
    settlement_id: int
    merchant_id: int
    merchant: str
    until: dt.date
    purchase_count: int
    gross: int
    cancel_count: int
    cancellations: int
    fee_bps: int
    fee: int
    net: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def fee_for(net_sales: int, fee_bps: int) -> int:
    """Basis points of ``net_sales``, rounded half up (half away from zero for refunds)."""
    sign = -1 if net_sales < 0 else 1
    return sign * ((abs(net_sales) * fee_bps + 5_000) // 10_000)


def day_number(day: dt.date) -> int:
    return (day - EPOCH).days


def settle(engine: Engine, until: dt.date) -> list[Statement]:
    """Settle every merchant with unsettled sales before ``until``; one transaction."""
    with import_transaction(engine) as conn:  # the import lock: no batch posts while we stamp sales
        return _settle(conn, until)


def _settle(conn: Connection, until: dt.date) -> list[Statement]:
    s = sales.c
    limit = day_number(until)
    open_rows = conn.execute(
        select(s.merchant_id, func.sum(s.purchase_count), func.sum(s.purchase_total), func.sum(s.cancel_count),
               func.sum(s.cancel_total))
        .where(s.settlement_id.is_(None), s.day < limit).group_by(s.merchant_id).order_by(s.merchant_id)).all()
    names = {m: (n, bps) for m, n, bps in conn.execute(
        select(merchants.c.merchant_id, merchants.c.name, merchants.c.fee_bps)
        .where(merchants.c.merchant_id.in_([row[0] for row in open_rows])))}
    out = []
    for merchant_id, pc, gross, cc, cancels in open_rows:
        merchant_id, pc, gross, cc, cancels = int(merchant_id), int(pc), int(gross), int(cc), int(cancels)
        name, bps = names.get(merchant_id, (f"merchant {merchant_id}", 0))
        net_sales = gross - cancels
        fee = fee_for(net_sales, bps)
        entry = ledger.open_entry(conn, "settlement", f"settlement of merchant {merchant_id} until {until}",
                                  until - dt.timedelta(days=1))
        ledger.post(conn, entry, [(ledger.merchant_payable(merchant_id), net_sales),
                                  (ledger.BANK, -(net_sales - fee)), (ledger.FEE_INCOME, -fee)])
        sid = conn.execute(insert(settlements).values(
            merchant_id=merchant_id, until=until, purchase_count=pc, gross=gross, cancel_count=cc,
            cancellations=cancels, fee_bps=bps, fee=fee, net=net_sales - fee, entry_id=entry)
            .returning(settlements.c.id)).scalar_one()
        conn.execute(update(sales).where(s.merchant_id == merchant_id, s.settlement_id.is_(None), s.day < limit)
                     .values(settlement_id=sid))
        out.append(Statement(sid, merchant_id, name, until, pc, gross, cc, cancels, bps, fee, net_sales - fee))
    return out
