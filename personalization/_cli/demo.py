"""``smartpurse demo``: the command around ``demo_month`` (progress and summary only)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from personalization._cli.demo_month import DemoOptions, run_demo
from purse._cli.util import CliContext, emit, pass_cli, stages
from purse.errors import SmartpurseError
from purse.money import format_amount


def _summary_text(data: dict[str, Any]) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    exp = data["currency_exponent"]

    def money(v: int) -> str:
        return format_amount(v, exp)

    t = Table(title="smartpurse demo: one simulated month", show_header=True, header_style="bold")
    t.add_column("")
    t.add_column("", justify="right")
    c = data["cards"]
    rows = [
        ("cards issued", f"{c['issued']}  ({c['issued'] - c['desfire']} reference, {c['desfire']} DESFire EV2)"),
        ("money loaded", f"{money(data['money']['loaded'])}  ({data['money']['loads']} loads)"),
        ("spent", f"{money(data['money']['spent'])}  ({data['money']['purchases']} purchases)"),
        ("cancelled", f"{money(data['money']['cancelled'])}  ({data['money']['cancellations']} cancellations)"),
        ("left on cards", money(data["money"]["left_on_cards"])),
        ("prizes won", f"{data['loyalty']['prizes']}"),
        ("points redeemed", f"{data['loyalty']['points_redeemed']}"),
        ("torn debit", f"card {data['tear']['card']}: {data['tear']['recovered']} recovered"),
        ("cloned card", f"{data['clone']['card']}: spent twice, "
                        f"{'caught' if data['clone']['caught'] else 'NOT caught'} by processing"),
        ("anomalies", ", ".join(f"{k} {n}" for k, n in sorted(data["anomalies"].items())) or "none"),
    ]
    if data["replacement"]["old"]:
        r = data["replacement"]
        rows.insert(-1, ("replaced card", f"{r['old']} → {r['new']} ({money(r['transferred'])} moved)"))
    ret = data["returned"]
    if ret["cards"]:
        rows.insert(-1, ("cards returned", f"{len(ret['cards'])}: {money(ret['paid_out'])} paid out and "
                                           f"{money(ret['deposits_refunded'])} of deposits refunded"))
    for label, value in rows:
        t.add_row(label, value)
    msgs = data["messages"]
    t.add_section()
    t.add_row("messages to holders", f"{msgs['emails']} e-mails, {msgs['sms']} SMS ({money(msgs['sms_cost'])})")
    for reason, n in sorted(msgs["suppressed"].items(), key=lambda kv: -kv[1]):
        t.add_row("  not sent", escape(f"{n}: {reason}"))
    cons = data["conservation"]
    t.add_section()
    t.add_row("loads - purchases + cancellations - cash-outs", money(cons["expected"]))
    t.add_row("sum of balances read from the cards", money(cons["cards"]))
    t.add_row("card float in the ledger", money(cons["ledger_float"]))
    t.add_row("sum of shadow balances", money(cons["shadow"]))
    t.add_row("conservation", "[green]holds[/green]" if cons["holds"] else "[red]BROKEN[/red]")
    buf = StringIO()
    Console(file=buf, width=100, force_terminal=sys.stdout.isatty()).print(t)
    out = data["out"]
    return (buf.getvalue() + f"\nreports and dashboard: {out}/reports  (open {out}/reports/dashboard.html)\n"
            f"messages to holders: {out}/messages/mailbox.mbox and sms.txt\n"
            f"the demo home is {out}/home (passphrase 'demo'): try\n"
            f"  SMARTPURSE_PASSPHRASE=demo smartpurse --home {out}/home cards list\n"
            f"the holders' own page: smartpurse --home {out}/home portal serve --local-delivery {out}/codes\n"
            f"  then open http://localhost:8030 and log in with a card a holder has (the code lands in {out}/codes)")


@click.command("demo")
@click.option("--cards", default=200, show_default=True, type=click.IntRange(2, 1_000_000), help="Cards to issue.")
@click.option("--purchases", default=5000, show_default=True, type=click.IntRange(10, 10_000_000),
              help="Purchases over the month.")
@click.option("--terminals", default=4, show_default=True, type=click.IntRange(2, 64), help="POS terminals.")
@click.option("--merchants", default=2, show_default=True, type=click.IntRange(1, 4), help="Merchants.")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3660), help="Days simulated.")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed: same seed, same reports.")
@click.option("--db", "db_url", help="Database URL (an empty PostgreSQL database, say); default SQLite in --out.")
@click.option("--out", default="smartpurse-demo", show_default=True, type=click.Path(file_okay=True, path_type=Path),
              help="Output folder (replaced if an earlier demo made it).")
@pass_cli
def demo(cli: CliContext, cards: int, purchases: int, terminals: int, merchants: int, days: int, seed: int,
         db_url: str | None, out: Path) -> None:
    """Run every role end to end on virtual cards: issue, load, sell, process, settle, report."""
    options = DemoOptions(out=out, cards=cards, purchases=purchases, terminals=terminals, merchants=merchants,
                          days=days, seed=seed, db_url=db_url or cli.db_override)
    with stages(cli) as progress:
        result = run_demo(options, progress)
    emit(cli, result, _summary_text)
    if not result["conservation"]["holds"]:
        raise SmartpurseError("the demo's conservation check failed: see the figures above")
    if not result["clone"]["caught"]:
        raise SmartpurseError(f"processing did not report the cloned card {result['clone']['card']}")
