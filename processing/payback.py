"""The payback of a card scheme, as the source document (the shop smart-card article, "Оценка
окупаемости") computes it, from the issuer's own figures or from a scenario.

The document's month: each of 200 regular customers loads 100 and spends it evenly, leaving 20, so a
card holds (100 + 20) / 2 = 60 on average and the shop holds 12,000 of its customers' money, which it
would otherwise borrow at 35 % a year (350 a month). Cash it no longer collects and counts saves
0.45 % (54 a month: the document applies the rate to the 12,000 float; applied to the 20,000 loaded in
the month it would be 90, and both are shown). Twenty per cent more regular customers at a 10 % margin
bring 40 x 100 x 10 % = 400 a month. 350 + 54 + 400 = 804 a month against a system of 7,500 less 200
card deposits of 7.50: 6,000 / 804 = 7.5 months.

Money stays integer minor units; rates are Decimals; every line carries its formula in words, so an
accountant can redo it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from purse.errors import UserError

__all__ = ["PaybackInputs", "PaybackLine", "payback_lines", "scenario_inputs"]


@dataclass(frozen=True)
class PaybackInputs:
    """What the payback is computed from: the scheme's figures and the issuer's parameters."""

    cards: int  # regular customers with a card in use
    average_float: int  # minor units held on cards on average over a month
    monthly_loads: int  # minor units loaded onto cards in a month
    monthly_spend_per_card: int  # minor units a regular customer spends in a month
    system_cost: int  # minor units
    deposit_per_card: int  # refundable, minor units
    rate_pct: Decimal  # the short-term credit rate the float replaces, a year
    cash_cost_pct: Decimal  # cash collection and counting, per cent of the cash handled
    margin_pct: Decimal  # the shop's margin on a purchase
    growth_pct: Decimal  # more regular customers thanks to the scheme

    def __post_init__(self) -> None:
        if self.cards <= 0:
            raise UserError("the payback needs at least one card in use")
        for name in ("average_float", "monthly_loads", "monthly_spend_per_card", "system_cost", "deposit_per_card"):
            if getattr(self, name) < 0:
                raise UserError(f"{name.replace('_', ' ')} must not be negative")
        for name in ("rate_pct", "cash_cost_pct", "margin_pct", "growth_pct"):
            if not Decimal(0) <= getattr(self, name) <= Decimal(1000):
                raise UserError(f"{name.replace('_pct', '').replace('_', ' ')} must be 0 to 1000 per cent")


def scenario_inputs(*, cards: int, monthly_load: int, left_pct: Decimal, **parameters: object) -> PaybackInputs:
    """The document's kind of scenario: every card loaded with ``monthly_load`` a month and spent evenly
    down to ``left_pct`` of it, so a card holds (load + left) / 2 on average."""
    left = _round(Decimal(monthly_load) * left_pct / 100)
    per_card = _round(Decimal(monthly_load + left) / 2)
    return PaybackInputs(cards=cards, average_float=cards * per_card, monthly_loads=cards * monthly_load,
                         monthly_spend_per_card=monthly_load, **parameters)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PaybackLine:
    """One line of the payback table: what it is, how it is computed, the amount (or months)."""

    item: str
    formula: str
    value: int | Decimal  # minor units, or months for the payback itself
    kind: str = "money"  # money | months | count


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), ROUND_HALF_UP))


def payback_lines(p: PaybackInputs) -> list[PaybackLine]:
    """The table, line by line, each with its formula."""
    interest = _round(Decimal(p.average_float) * p.rate_pct / 100 / 12)
    cash_on_float = _round(Decimal(p.average_float) * p.cash_cost_pct / 100)
    cash_on_loads = _round(Decimal(p.monthly_loads) * p.cash_cost_pct / 100)
    new_customers = _round(Decimal(p.cards) * p.growth_pct / 100)
    margin = _round(Decimal(new_customers * p.monthly_spend_per_card) * p.margin_pct / 100)
    monthly = interest + cash_on_float + margin
    deposits = p.cards * p.deposit_per_card
    net_cost = max(p.system_cost - deposits, 0)
    months = (Decimal(net_cost) / monthly).quantize(Decimal("0.1"), ROUND_HALF_UP) if monthly else Decimal(0)
    return [
        PaybackLine("cards in use", "regular customers with a card", p.cards, "count"),
        PaybackLine("average float per card", "average float / cards", _round(Decimal(p.average_float) / p.cards)),
        PaybackLine("average float", "money held on cards on average over the month", p.average_float),
        PaybackLine("interest saved a month", f"average float x {p.rate_pct} % a year / 12", interest),
        PaybackLine("cash handling saved a month", f"average float x {p.cash_cost_pct} % (as the document "
                    "applies it)", cash_on_float),
        PaybackLine("cash handling saved a month, on the cash loaded", f"monthly loads x {p.cash_cost_pct} % "
                    "(the cash really handled; not in the total)", cash_on_loads),
        PaybackLine("more regular customers", f"cards x {p.growth_pct} %", new_customers, "count"),
        PaybackLine("extra margin a month", f"more customers x monthly spend per card x {p.margin_pct} %", margin),
        PaybackLine("benefit a month", "interest saved + cash handling saved + extra margin", monthly),
        PaybackLine("card deposits", "cards x deposit per card (refundable, held while the cards are out)", deposits),
        PaybackLine("system cost less deposits", "system cost - card deposits", net_cost),
        PaybackLine("payback", "system cost less deposits / benefit a month", months, "months"),
    ]
