"""``smartpurse notify``: the messages card holders get (docs/holders.md)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from processing.db import open_database
from processing.holders.delivery import DEFAULT_LEASE, Deliverer, queue_status
from processing.holders.render import event_context, render
from processing.holders.sms import sms_length
from processing.presentation import Presentation
from processing.schema.holders import EVENT_KINDS, EventKind, holder_events
from purse._cli.util import CliContext, emit, pass_cli, table
from purse.errors import UserError

_SAMPLE: dict[EventKind, dict[str, Any]] = {
    EventKind.LOAD: {"amount": 50_000, "balance": 62_000},
    EventKind.PURCHASES: {"day": 0},
    EventKind.PRIZE: {"counter": 7, "prizes": 1},
    EventKind.LOW_BALANCE: {"balance": 9_000, "threshold": 10_000},
    EventKind.BLOCKED: {"by": "issuer", "reason": "lost"},
    EventKind.REPLACEMENT_READY: {"old": "6277000000000011"},
    EventKind.VALUE_MOVED: {"amount": 38_000, "balance": 38_000},
    EventKind.RETURNED: {"amount": 18_000, "balance": 0},
    EventKind.POINTS_EXPIRING: {"points": 240, "program": "Coffee club", "lapses_at": int(time.time()) + 6 * 86_400},
    EventKind.CAMPAIGN: {"campaign": "sample", "subject": {"en": "Autumn sale", "ru": "Осенняя распродажа"},
                         "text": {"en": "Double points on every coffee this week.",
                                  "ru": "Двойные баллы за кофе всю неделю."}},
}


@click.group("notify")
def notify() -> None:
    """The messages card holders get: deliver the outbox, see the queue, preview a message."""


@notify.command("run")
@click.option("--limit", type=click.IntRange(1), help="At most this many messages this run.")
@click.option("--lease", type=click.IntRange(1), default=DEFAULT_LEASE, show_default=True,
              help="Seconds a claimed message may take before another run calls it interrupted.")
@pass_cli
def run(cli: CliContext, limit: int | None, lease: int) -> None:
    """Deliver what is due: plan new events into messages, send them, say what became of each.

    Safe to run from cron, twice at once, or to kill: no message is sent twice, none is lost."""
    result = Deliverer(open_database(cli.db_url), cli.home.settings.notify, cli.home.issuer, lease=lease,
                       wallet=cli.home.settings.wallet).run(limit)
    data = result.as_dict()

    def text(d: dict[str, Any]) -> str:
        line = (f"planned {d['planned']} messages; sent {d['sent']}, suppressed {d['suppressed']}, failed "
                f"{d['failed']}, to retry {d['retried']}, interrupted {d['interrupted']}")
        if d["quiet_until"]:
            line += f"; quiet hours until {dt.datetime.fromtimestamp(d['quiet_until'], dt.UTC):%Y-%m-%d %H:%M} UTC"
        return line + "".join(f"\n  {n} x {reason}" for reason, n in sorted(d["reasons"].items()))

    emit(cli, data, text)


@notify.command("status")
@pass_cli
def status(cli: CliContext) -> None:
    """The queue: messages per channel and state (and what the SMS cost), what is due, why some did not go."""
    data = queue_status(open_database(cli.db_url), int(time.time()))
    m = Presentation.for_issuer(cli.home.issuer).money

    def text(d: dict[str, Any]) -> str:
        rows = [(r["channel"], r["state"], str(r["count"]), m(r["cost"]) if r["cost"] else "") for r in d["messages"]]
        parts = [table(("channel", "state", "messages", "cost"), rows, title="messages", right=("messages", "cost"))
                 if rows else "no messages yet",
                 f"due now {d['due_now']}; events to plan {d['events_to_plan']}"]
        parts += [f"  {r['count']} {r['state']}: {r['reason']}" for r in d["reasons"]]
        return "\n".join(parts)

    emit(cli, data, text)


@notify.command("preview")
@click.argument("kind", type=click.Choice(EVENT_KINDS))
@click.option("--language", type=click.Choice(["en", "ru"]), help="[the issuer's locale]")
@click.option("--event", "event_id", type=int, help="Render this outbox event instead of sample figures.")
@pass_cli
def preview(cli: CliContext, kind: str, language: str | None, event_id: int | None) -> None:
    """Render the e-mail and the SMS of an event KIND: subject, text, and the SMS's length, parts and cost."""
    from sqlalchemy import select

    issuer, settings = cli.home.issuer, cli.home.settings.notify
    lang = language or issuer.locale
    look = Presentation.for_issuer(issuer, lang)
    zone = ZoneInfo(settings.timezone)
    engine = open_database(cli.db_url)
    with engine.connect() as conn:
        if event_id is not None:
            e = holder_events.c
            row = conn.execute(select(e.kind, e.card_number, e.data, e.occurred_at).where(e.id == event_id)).first()
            if row is None or row.kind != kind:
                raise UserError(f"no {kind} event {event_id} in the outbox")
            number, data, at = row.card_number, dict(row.data), int(row.occurred_at)
        else:
            number, data, at = "6277000000000029", dict(_SAMPLE[EventKind(kind)]), int(time.time())
            if kind == EventKind.PURCHASES:
                data["day"] = at // 86_400 - 1
        context = event_context(conn, EventKind(kind), number, data, at, "Anna" if lang == "en" else "Анна", look,
                                zone, issuer.display_name)
    rendered = render(EventKind(kind), lang, context, f"{settings.public_url.rstrip('/')}/unsubscribe/<token>")
    length = sms_length(rendered.sms)
    data_out = {"subject": rendered.subject, "text": rendered.text, "html": rendered.html, "sms": rendered.sms,
                "sms_encoding": length.encoding, "sms_length": length.units, "sms_parts": length.parts,
                "sms_cost": length.parts * settings.sms_part_price}
    emit(cli, data_out, lambda d: (f"Subject: {d['subject']}\n\n{d['text']}\nSMS ({d['sms_encoding']}, "
                                   f"{d['sms_length']} characters, {d['sms_parts']} part(s), cost "
                                   f"{look.money(d['sms_cost'])}):\n{d['sms']}"))


@notify.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), default=8025, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (a TLS reverse proxy in front for the world).")
@pass_cli
def serve(cli: CliContext, host: str, port: int) -> None:
    """Answer the unsubscribe links of e-mails and the SMS gateway's STOP callback until interrupted."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from processing.holders.web import holder_app

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    try:
        settings = cli.home.settings
        app = holder_app(open_database(cli.db_url), wallet=settings.wallet if settings.wallet.pass_type_id else None,
                         issuer=settings.issuer, public_url=settings.notify.public_url)
        server = make_server(host, port, app, handler_class=Quiet)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    emit(cli, {"url": f"http://{host}:{port}"}, f"answering unsubscribe links at http://{host}:{port} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@notify.command("campaign")
@click.argument("name")
@click.option("--subject", "subjects", multiple=True, metavar="LANG=TEXT", required=True,
              help="The e-mail's subject in a language, e.g. ru=Осенняя распродажа (repeat per language).")
@click.option("--text", "texts", multiple=True, metavar="LANG=TEXT", required=True,
              help="The message in a language, e.g. en=Double points this week (repeat per language).")
@click.option("--program", type=int, help="Holders of a card in this loyalty program.")
@click.option("--tier", type=int, help="... at this tier (with --program: of that program).")
@click.option("--min-points", type=click.IntRange(0), help="... with at least these points.")
@click.option("--idle-days", type=click.IntRange(1), help="Holders who have not bought for this many days.")
@click.option("--active-days", type=click.IntRange(1), help="Holders who bought within this many days.")
@click.option("--merchant", type=int, help="Holders who bought at this merchant.")
@click.option("--dry-run", is_flag=True, help="Only count: reach per channel, holders not reached and why, cost.")
@pass_cli
def campaign(cli: CliContext, name: str, subjects: tuple[str, ...], texts: tuple[str, ...], program: int | None,
             tier: int | None, min_points: int | None, idle_days: int | None, active_days: int | None,
             merchant: int | None, dry_run: bool) -> None:
    """Send campaign NAME to a segment of holders, each on the channels they consented to.

    Launching NAME again reaches nobody twice; `notify run` then delivers it. With --dry-run, nothing
    is written: the reach and the cost of each channel, as the issuer compares them."""
    from processing.holders.campaigns import Campaign, Segment, estimate, launch

    try:
        made = Campaign(name, _per_language("--subject", subjects), _per_language("--text", texts))
    except ValueError as e:
        raise UserError(str(e)) from None
    segment = Segment(program, tier, min_points, idle_days, active_days, merchant)
    engine, now = open_database(cli.db_url), int(time.time())
    settings, look = cli.home.settings.notify, Presentation.for_issuer(cli.home.issuer)
    with engine.begin() as conn:
        data = estimate(conn, made, segment, now, settings.sms_part_price, cli.home.issuer.locale)
        data["launched"] = 0 if dry_run else launch(conn, made, segment, now)
    data["dry_run"] = dry_run

    def text(d: dict[str, Any]) -> str:
        rows = [(r["channel"], str(r["reached"]), str(r["no_consent"]), str(r["no_address"]),
                 str(r["sms_parts"]) if r["channel"] == "sms" else "", look.money(r["cost"])) for r in d["channels"]]
        head = (f"campaign {d['campaign']}: {d['holders']} holders ({d['segment']})" +
                (" - dry run, nothing sent" if d["dry_run"] else f"; {d['launched']} new messages queued: "
                 "`smartpurse notify run` delivers them"))
        return head + "\n" + table(("channel", "reached", "no consent", "no address", "SMS parts", "cost"), rows,
                                   right=("reached", "no consent", "no address", "SMS parts", "cost"))

    emit(cli, data, text)


def _per_language(option: str, values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        language, sep, words = value.partition("=")
        if not sep or language not in ("en", "ru") or not words.strip():
            raise UserError(f"{option} is LANG=TEXT with LANG en or ru, not {value!r}")
        out[language] = words.strip()
    return out


@notify.command("wallet")
@click.argument("number")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the Apple Wallet pass here "
              "(NUMBER.pkpass).")
@click.option("--google", is_flag=True, help="Print the Google Wallet save link instead.")
@pass_cli
def wallet(cli: CliContext, number: str, out: Path | None, google: bool) -> None:
    """The Wallet card of card NUMBER: an Apple Wallet .pkpass (balance and points as of the last batch,
    the number as QR and Code 128, the stores), or with --google a Google Wallet save link."""
    from sqlalchemy import select

    from processing.holders.wallet import google_save_link, issue_pass, pass_content
    from processing.schema.registry import cards, holders

    settings = cli.home.settings
    engine = open_database(cli.db_url)
    with engine.begin() as conn:
        row = conn.execute(select(cards.c.number, holders.c.name).outerjoin(holders, holders.c.id == cards.c.holder_id)
                           .where(cards.c.number == number)).first()
        if row is None:
            raise UserError(f"card {number} is not in the registry")
        if google:
            link = google_save_link(pass_content(conn, number, row.name or ""), settings.wallet, settings.issuer)
            emit(cli, {"number": number, "google_save_link": link}, link)
            return
        data = issue_pass(conn, number, row.name or "", settings.wallet, settings.issuer, settings.notify.public_url)
    path = out or Path(f"{number}.pkpass")
    try:
        path.write_bytes(data)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    emit(cli, {"number": number, "pkpass": str(path), "bytes": len(data)}, f"Apple Wallet pass written to {path}")
