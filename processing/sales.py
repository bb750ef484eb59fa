"""Per-batch daily sales: the aggregates settlement and the reports read instead of ``records``.

A batch posts its new purchases and cancellations to the ledger as one entry; alongside,
it writes one ``sales`` row per card day (counts and totals of each kind). Settlement
stamps these rows, not the records, which is why ``records`` carries no (merchant, day)
index and no settlement column (docs/processing.md, "Sales aggregates"). ``smartpurse
check`` proves each row equals the sum of its records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from processing.columns import CANCEL, PURCHASE
from processing.rows import AMOUNT, DAY, RECORD_TYPE


def sales_by_day(rows: Iterable[Sequence[Any]], into: dict[int, list[int]] | None = None) -> dict[int, list[int]]:
    """Day -> [purchase count, purchase total, cancel count, cancel total] of storage rows.

    Rows are ``processing.rows.StoredRow`` tuples; other record types than purchases and
    cancellations are left out. ``into`` accumulates over several chunks.
    """
    days = {} if into is None else into
    for r in rows:
        kind = r[RECORD_TYPE]
        if kind == PURCHASE or kind == CANCEL:
            sums = days.get(r[DAY])
            if sums is None:
                sums = days[r[DAY]] = [0, 0, 0, 0]
            at = 0 if kind == PURCHASE else 2
            sums[at] += 1
            sums[at + 1] += r[AMOUNT]
    return days


def sales_rows(batch_id: int, merchant_id: int, terminal_id: int,
               days: Mapping[int, Sequence[int]]) -> list[dict[str, int]]:
    """The batch's ``sales`` rows, one per day (``sales_by_day``), to insert with those of the batches beside it."""
    return [{"batch_id": batch_id, "day": day, "merchant_id": merchant_id, "terminal_id": terminal_id,
             "purchase_count": pc, "purchase_total": pt, "cancel_count": cc, "cancel_total": ct}
            for day, (pc, pt, cc, ct) in sorted(days.items())]
