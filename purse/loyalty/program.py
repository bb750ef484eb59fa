"""The loyalty program as the issuer writes it: a TOML or JSON file, parsed and checked.

A program is data, not code: the terminal runs ``purse.loyalty.rules`` over it. Every
amount in the file is a decimal string in major units ("100.00"), converted exactly
with ``purse.money.parse_amount``; a float is refused, so no rounding ever happens while
reading a program (docs/loyalty.md, "Program file").
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from typing import Any

from purse.errors import UserError
from purse.money import format_amount, parse_amount

MAX_U16 = 0xFFFF
MAX_POINTS = 0x7FFFFFFF  # points earned travel as a signed 32-bit field in DEBIT
SECONDS_PER_DAY = 86_400


class ProgramError(UserError):
    """A program file that cannot be used: malformed, or a rule out of range."""


@dataclass(frozen=True, slots=True)
class PerAmount:
    """``points`` for every whole ``amount`` debited (partial amounts earn nothing)."""

    amount: int
    points: int


@dataclass(frozen=True, slots=True)
class BigPurchase:
    """``points`` once when a single purchase debits at least ``threshold``."""

    threshold: int
    points: int


@dataclass(frozen=True, slots=True)
class Frequency:
    """``points`` on the ``visits``-th earning visit of a window of ``days`` days."""

    visits: int
    days: int
    points: int


@dataclass(frozen=True, slots=True)
class Milestone:
    """``points`` once, when the cumulative spend first reaches ``spend``."""

    spend: int
    points: int


@dataclass(frozen=True, slots=True)
class Prize:
    """When points reach ``threshold``: a prize receipt, then reset to 0 or subtract."""

    threshold: int
    mode: str  # "reset" | "subtract"
    text: str


@dataclass(frozen=True, slots=True)
class Tier:
    """A level reached by cumulative spend, with a discount in basis points (1/100 %)."""

    name: str
    min_spend: int
    discount_bp: int


@dataclass(frozen=True, slots=True)
class Redemption:
    """Points as payment: each point pays ``point_value`` minor units."""

    point_value: int
    min_points: int = 1


@dataclass(frozen=True, slots=True)
class Program:
    """One validated loyalty program (docs/loyalty.md)."""

    program_id: int
    name: str
    version: int = 1
    exponent: int = 2
    per_amount: PerAmount | None = None
    per_visit: int = 0
    big_purchase: BigPurchase | None = None
    frequency: Frequency | None = None
    milestones: tuple[Milestone, ...] = ()
    prize: Prize | None = None
    tiers: tuple[Tier, ...] = field(default_factory=lambda: (Tier("base", 0, 0),))
    expiry_days: int = 0
    redemption: Redemption | None = None

    def tier_for(self, cumulative_spend: int) -> int:
        """Index of the highest tier whose ``min_spend`` the spend has reached."""
        index = 0
        for i, tier in enumerate(self.tiers):
            if cumulative_spend >= tier.min_spend:
                index = i
        return index

    def tier(self, index: int) -> Tier:
        """The tier a card's stored index names; an index beyond the list is the top tier."""
        return self.tiers[min(index, len(self.tiers) - 1)]

    def describe(self) -> dict[str, Any]:
        """A plain, JSON-ready view with amounts as decimal strings (for ``program show``)."""
        money = lambda v: format_amount(v, self.exponent)  # noqa: E731
        out: dict[str, Any] = {"program_id": self.program_id, "name": self.name, "version": self.version}
        earn: dict[str, Any] = {}
        if self.per_amount:
            earn["per_amount"] = {"amount": money(self.per_amount.amount), "points": self.per_amount.points}
        if self.per_visit:
            earn["per_visit"] = self.per_visit
        if self.big_purchase:
            earn["big_purchase"] = {"threshold": money(self.big_purchase.threshold),
                                    "points": self.big_purchase.points}
        if self.frequency:
            f = self.frequency
            earn["frequency"] = {"visits": f.visits, "days": f.days, "points": f.points}
        if self.milestones:
            earn["milestones"] = [{"spend": money(m.spend), "points": m.points} for m in self.milestones]
        out["earn"] = earn
        if self.prize:
            out["prize"] = {"threshold": self.prize.threshold, "mode": self.prize.mode, "text": self.prize.text}
        out["tiers"] = [{"name": t.name, "min_spend": money(t.min_spend),
                         "discount_percent": f"{t.discount_bp // 100}.{t.discount_bp % 100:02d}"}
                        for t in self.tiers]
        if self.expiry_days:
            out["expiry"] = {"days": self.expiry_days}
        if self.redemption:
            out["redeem"] = {"point_value": money(self.redemption.point_value),
                             "min_points": self.redemption.min_points}
        return out


# -- parsing -----------------------------------------------------------------------------


def parse_program_text(text: str, source: str = "program") -> Program:
    """A program from TOML or JSON text (JSON when it starts with ``{``)."""
    try:
        raw = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ProgramError(f"{source}: not valid TOML or JSON: {e}") from None
    return program_from_dict(raw, source)


def parse_program_bytes(data: bytes, source: str = "program") -> Program:
    """A program file's bytes (TOML, or JSON) checked and parsed; ``ProgramError`` names ``source`` and the problem."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProgramError(f"{source}: not UTF-8 text") from None
    return parse_program_text(text, source)


class _Reader:
    """Field access with one-line errors that name the field (``earn.per_amount.points``)."""

    def __init__(self, source: str, exponent: int = 2) -> None:
        self.source = source
        self.exponent = exponent

    def fail(self, where: str, why: str) -> ProgramError:
        return ProgramError(f"{self.source}: {where}: {why}")

    def table(self, obj: Any, where: str) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise self.fail(where, "must be a table")
        return obj

    def known(self, obj: dict[str, Any], where: str, keys: set[str]) -> None:
        unknown = sorted(set(obj) - keys)
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(keys))})")

    def int_(self, obj: dict[str, Any], key: str, where: str, *, lo: int = 0, hi: int = MAX_POINTS,
             default: int | None = None) -> int:
        if key not in obj:
            if default is None:
                raise self.fail(f"{where}.{key}", "is required")
            return default
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{where}.{key}", f"must be a whole number, not {value!r}")
        if not lo <= value <= hi:
            raise self.fail(f"{where}.{key}", f"must be between {lo} and {hi}, not {value}")
        return value

    def amount(self, obj: dict[str, Any], key: str, where: str, *, allow_zero: bool = False) -> int:
        if key not in obj:
            raise self.fail(f"{where}.{key}", "is required")
        value = obj[key]
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f'write amounts as decimal strings ("100.00"), not {value!r}')
        try:
            return parse_amount(value, self.exponent, allow_zero=allow_zero)
        except UserError as e:
            raise self.fail(f"{where}.{key}", str(e)) from None

    def percent_bp(self, obj: dict[str, Any], key: str, where: str) -> int:
        """A percentage as basis points: "5" -> 500, "2.75" -> 275; at most 100 %."""
        value = obj.get(key, "0")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f'write percentages as strings ("2.5"), not {value!r}')
        try:
            bp = parse_amount(value, 2, allow_zero=True)
        except UserError as e:
            raise self.fail(f"{where}.{key}", str(e)) from None
        if bp > 10_000:
            raise self.fail(f"{where}.{key}", "a discount is at most 100 percent")
        return bp

    def text(self, obj: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
        value = obj.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where}.{key}", "must be a non-empty string")
        return value.strip()


def program_from_dict(raw: Any, source: str = "program") -> Program:
    """Validate a parsed program file; every problem is one ``ProgramError`` line."""
    r = _Reader(source)
    top = r.table(raw, "file")
    r.known(top, "file", {"program", "earn", "prize", "tiers", "expiry", "redeem"})
    head = r.table(top.get("program"), "[program]")
    r.known(head, "program", {"id", "name", "version", "exponent"})
    r.exponent = r.int_(head, "exponent", "program", lo=0, hi=4, default=2)
    program_id = r.int_(head, "id", "program", lo=1, hi=MAX_U16)
    name = r.text(head, "name", "program")
    version = r.int_(head, "version", "program", lo=1, default=1)

    earn = r.table(top.get("earn", {}), "[earn]")
    r.known(earn, "earn", {"per_amount", "per_visit", "big_purchase", "frequency", "milestones"})
    per_amount = big = freq = None
    if "per_amount" in earn:
        t = r.table(earn["per_amount"], "earn.per_amount")
        r.known(t, "earn.per_amount", {"amount", "points"})
        per_amount = PerAmount(r.amount(t, "amount", "earn.per_amount"), r.int_(t, "points", "earn.per_amount"))
    per_visit = r.int_(earn, "per_visit", "earn", default=0)
    if "big_purchase" in earn:
        t = r.table(earn["big_purchase"], "earn.big_purchase")
        r.known(t, "earn.big_purchase", {"threshold", "points"})
        big = BigPurchase(r.amount(t, "threshold", "earn.big_purchase"), r.int_(t, "points", "earn.big_purchase"))
    if "frequency" in earn:
        t = r.table(earn["frequency"], "earn.frequency")
        r.known(t, "earn.frequency", {"visits", "days", "points"})
        freq = Frequency(r.int_(t, "visits", "earn.frequency", lo=2, hi=MAX_U16),
                         r.int_(t, "days", "earn.frequency", lo=1, hi=3650), r.int_(t, "points", "earn.frequency"))
    milestones: list[Milestone] = []
    raw_ms = earn.get("milestones", [])
    if not isinstance(raw_ms, list):
        raise r.fail("earn.milestones", "must be a list of {spend, points}")
    for i, m in enumerate(raw_ms):
        where = f"earn.milestones[{i}]"
        t = r.table(m, where)
        r.known(t, where, {"spend", "points"})
        milestones.append(Milestone(r.amount(t, "spend", where), r.int_(t, "points", where)))
    spends = [m.spend for m in milestones]
    if spends != sorted(set(spends)):
        raise r.fail("earn.milestones", "spends must be strictly increasing")

    prize = None
    if "prize" in top:
        t = r.table(top["prize"], "[prize]")
        r.known(t, "prize", {"threshold", "mode", "text"})
        mode = t.get("mode", "reset")
        if mode not in ("reset", "subtract"):
            raise r.fail("prize.mode", f'must be "reset" or "subtract", not {mode!r}')
        prize = Prize(r.int_(t, "threshold", "prize", lo=1), mode, r.text(t, "text", "prize"))

    tiers = _tiers(r, top.get("tiers"))

    expiry_days = 0
    if "expiry" in top:
        t = r.table(top["expiry"], "[expiry]")
        r.known(t, "expiry", {"days"})
        expiry_days = r.int_(t, "days", "expiry", lo=1, hi=3650)

    redemption = None
    if "redeem" in top:
        t = r.table(top["redeem"], "[redeem]")
        r.known(t, "redeem", {"point_value", "min_points"})
        redemption = Redemption(r.amount(t, "point_value", "redeem"),
                                r.int_(t, "min_points", "redeem", lo=1, default=1))

    return Program(program_id, name, version, r.exponent, per_amount, per_visit, big, freq, tuple(milestones),
                   prize, tiers, expiry_days, redemption)


def _tiers(r: _Reader, raw: Any) -> tuple[Tier, ...]:
    if raw is None:
        return (Tier("base", 0, 0),)
    if not isinstance(raw, list) or not raw:
        raise r.fail("tiers", "must be a non-empty list of [[tiers]] tables")
    if len(raw) > 255:
        raise r.fail("tiers", "at most 255 tiers (the card stores the tier in one byte)")
    tiers: list[Tier] = []
    for i, t in enumerate(raw):
        where = f"tiers[{i}]"
        t = r.table(t, where)
        r.known(t, where, {"name", "min_spend", "discount_percent"})
        tiers.append(Tier(r.text(t, "name", where), r.amount(t, "min_spend", where, allow_zero=True),
                          r.percent_bp(t, "discount_percent", where)))
    if tiers[0].min_spend != 0:
        raise r.fail("tiers[0].min_spend", 'the first tier is the base tier: its min_spend is "0"')
    spends = [t.min_spend for t in tiers]
    if spends != sorted(set(spends)):
        raise r.fail("tiers", "min_spend must be strictly increasing")
    return tuple(tiers)


def example_program_bytes() -> bytes:
    """The annotated example program shipped in the package (docs/loyalty.md explains it): what
    ``smartpurse program example`` writes, and what the demo runs."""
    from importlib.resources import files

    return files("purse.loyalty").joinpath("demo-program.toml").read_bytes()
