"""What the dashboard shows, as plain typed rows: the seam between the database and the page.

The renderer takes only this, so it can be tested on hand-built data and cannot read
anything the JSON reports did not also produce. Every stored amount is an ``int`` in the
currency's minor units (docs/design.md, "Invariants"); floats appear only later, as pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class DailySales:
    """One merchant's purchases on one day, net of cancellations made that day."""

    day: date
    merchant: str
    purchases: int  # minor units, gross
    cancellations: int = 0  # minor units, money given back
    count: int = 0  # purchase records

    @property
    def net(self) -> int:
        return self.purchases - self.cancellations


@dataclass(frozen=True, slots=True)
class FloatPoint:
    """The card float (issuer liability for money on cards) at the end of ``day``."""

    day: date
    balance: int  # minor units, closing balance of the card-float account
    loads: int = 0  # minor units loaded that day
    spent: int = 0  # minor units spent that day, net of cancellations


@dataclass(frozen=True, slots=True)
class PointsLiability:
    """Points still on cards for one loyalty program: a promise the issuer must honour."""

    program: str
    points: int  # outstanding now, on every card of the program
    cards: int = 0  # cards holding a points slot of this program
    earned: int = 0  # points earned in the period
    redeemed: int = 0  # points redeemed in the period
    lapsed: int = 0  # points that expired in the period (the program's expiry), taken at the card's next visit
    to_prizes: int = 0  # points turned into prizes in the period


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A fraud signal or a reconciliation conflict found by processing."""

    detected: datetime
    kind: str  # a processing.anomalies.AnomalyKind value, e.g. "clone", "counter_gap"
    card_number: str
    detail: str
    severity: str = "warning"  # "critical" | "warning" | "info": how urgently a person should look
    counter: int | None = None
    terminal_id: int | None = None


@dataclass(frozen=True, slots=True)
class SettlementRow:
    """Where one merchant's sales of the period stand: settled to the bank or still pending."""

    merchant: str
    gross: int  # purchases, minor units
    cancellations: int  # minor units given back
    fees: int  # the issuer's fee on the net sales, minor units
    settled: int  # net sales already covered by a settlement statement
    pending: int  # net sales not yet settled
    last_settled: date | None = None  # last day covered by a statement

    @property
    def net_sales(self) -> int:
        return self.gross - self.cancellations

    @property
    def status(self) -> str:
        if self.pending == 0:
            return "settled" if self.settled else "nothing due"
        return "partial" if self.settled else "pending"


@dataclass(frozen=True, slots=True)
class TerminalRow:
    """One terminal: when its last batch arrived and what it sold in the period (``report terminals``)."""

    terminal_id: int
    merchant: str
    batches: int  # accepted batches, ever
    last_batch_at: datetime | None  # when the last accepted batch was imported; None: never
    days_silent: int | None  # days since then, at the end of the period
    silent: bool  # no batch for more than processing.reports.SILENT_AFTER_DAYS days, or never
    purchases: int = 0  # purchase records in the period
    net: int = 0  # minor units, purchases less cancellations in the period


@dataclass(frozen=True, slots=True)
class DashboardData:
    """Everything one dashboard page shows, for one issuer and one period."""

    issuer: str
    currency: str  # ISO 4217 code or number, printed next to amounts
    exponent: int  # digits after the decimal point of the minor unit
    period_from: date
    period_to: date
    generated: datetime
    daily_sales: list[DailySales] = field(default_factory=list)
    float_series: list[FloatPoint] = field(default_factory=list)
    points: list[PointsLiability] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)  # the top ones, most serious first
    anomaly_kinds: dict[str, int] = field(default_factory=dict)  # every anomaly of the period, counted by kind
    settlement: list[SettlementRow] = field(default_factory=list)
    terminals: list[TerminalRow] = field(default_factory=list)
    cards_by_state: dict[str, int] = field(default_factory=dict)  # registry: issued, blocked, replaced
    cards_used: int | None = None  # cards with a purchase, cancellation or load in the period
    previous_net_sales: int | None = None  # the same number of days just before the period; None: not known
    previous_purchases: int | None = None
    sources: dict[str, str] = field(default_factory=dict)  # section -> where its figures come from

    @property
    def anomaly_counts(self) -> dict[str, int]:
        """Anomalies per kind in the period; the shown ones when no full count was given."""
        if self.anomaly_kinds:
            return dict(self.anomaly_kinds)
        counts: dict[str, int] = {}
        for a in self.anomalies:
            counts[a.kind] = counts.get(a.kind, 0) + 1
        return counts
