"""Receipts as people read them: one text layout for the POS and the load desk."""

from __future__ import annotations

from typing import Any

from purse._cli.util import CliContext
from purse.loyalty import Program
from purse.terminal import Receipt

COMPLETED_BEFORE = "completed before the card was pulled"


def receipt_data(receipt: Receipt, program: Program | None = None, tier: int | None = None, *,
                 completed_before: bool = False) -> dict[str, Any]:
    """A receipt as the command's result; ``completed_before``: nothing was done now, this is the earlier one."""
    data = receipt.as_dict()
    data["completed_before"] = completed_before
    if program is not None:
        data["program_name"] = program.name
        if tier is not None:
            data["tier"] = program.tier(tier).name
    return data


def receipt_text(cli: CliContext, data: dict[str, Any]) -> str:
    """The receipt as printed; transactions a pulled card had left pending are printed first, marked."""
    parts = [f"{COMPLETED_BEFORE}:\n{_lines(cli, r)}" for r in data.get("recovered", [])]
    if data.get("completed_before"):
        parts.append(f"{COMPLETED_BEFORE}: done once, not again (run it with --again to do it a second time)\n"
                     + _lines(cli, data))
    else:
        parts.append(_lines(cli, data))
    return "\n".join(parts)


def _lines(cli: CliContext, data: dict[str, Any]) -> str:
    m = cli.money
    lines = [f"{data['kind'].upper()}  card {data['card_number']}  terminal {data['terminal_id']}"
             f"  seq {data['terminal_seq']}  counter {data['counter']}"]
    if data["kind"] == "purchase":
        if data["price"]:  # a purchase recovered from the card knows what it debited, not the price asked
            lines.append(f"  price        {m(data['price']):>12}")
        if data["discount"]:
            lines.append(f"  discount     {m(-data['discount']):>12}  ({data.get('tier', 'tier')})")
        if data["points_redeemed"]:
            n = data["points_redeemed"]
            lines.append(f"  points paid  {m(-data['points_value']):>12}  ({n} point{'s' * (n != 1)})")
        lines.append(f"  debited      {m(data['amount']):>12}")
    else:
        lines.append(f"  amount       {m(data['amount']):>12}")
    lines.append(f"  balance      {m(data['balance']):>12}")
    if data["program_id"]:
        name = data.get("program_name", f"program {data['program_id']}")
        lines.append(f"  points       {data['points_after']:>12}  ({name}: {data['points_earned']:+d} earned, "
                     f"{data['points_redeemed']} redeemed)")
    for text in data["prize_text"]:
        lines.append(f"  *** PRIZE: {text} ***")
    if data.get("transfer_from"):
        lines.append(f"  value of replaced card {data['transfer_from']}: no cash taken")
    lines.append(f"  certificate  {data['certificate']}")
    return "\n".join(lines)
