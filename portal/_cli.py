"""``smartpurse portal``: run the holder's page, read its security log (docs/portal.md)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path
from typing import Any

import click

from processing.db import open_database
from purse._cli.util import CliContext, emit, pass_cli, table
from purse.errors import UserError


@click.group("portal")
def portal() -> None:
    """The holder's own page: balance, points, statement, a lost card, behind a one-time code."""


class _Stop(KeyboardInterrupt):
    """SIGTERM, as Ctrl-C: the server stops and the codes already queued are still sent."""


def _stop(_signum: int, _frame: Any) -> None:
    raise _Stop


@portal.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (a TLS reverse proxy in front for the world: docs/portal.md).")
@click.option("--port", type=click.IntRange(0, 65535), default=8030, show_default=True,
              help="Port to listen on (0: any free one, said in the first line printed).")
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Requests answered at once.")
@click.option("--local-delivery", type=click.Path(file_okay=False, path_type=Path),
              help="Try it out: deliver the login codes to a local SMTP server and SMS gateway that write them "
                   "to FOLDER/mailbox.mbox and FOLDER/sms.txt, instead of [notify]'s.")
@pass_cli
def serve(cli: CliContext, host: str, port: int, threads: int, local_delivery: Path | None) -> None:
    """Serve the holders' page until interrupted (Ctrl-C or SIGTERM)."""
    from dataclasses import replace

    from waitress import create_server

    from portal.app import create_app

    settings = cli.home.settings
    engine = open_database(cli.db_url)
    local: list[Any] = []
    if local_delivery is not None:
        from processing.holders.localgateway import LocalSmsGateway, LocalSmtpServer

        local_delivery.mkdir(parents=True, exist_ok=True)
        smtp = LocalSmtpServer(keep_in=local_delivery / "mailbox.mbox").start()
        gateway = LocalSmsGateway(keep_in=local_delivery / "sms.txt").start()
        local = [smtp, gateway]
        os.environ[settings.notify.sms_key_env] = gateway.api_id
        settings = replace(settings, notify=replace(settings.notify, smtp_host="127.0.0.1", smtp_port=smtp.port,
                                                    smtp_security="none", smtp_user="", sms_url=gateway.url,
                                                    sms_api="smsru"))
    if not settings.notify.smtp_host and not settings.notify.sms_url:
        click.echo("warning: [notify] has no SMTP server and no SMS gateway: no login code can be sent "
                   "(--local-delivery DIR tries the page out with local ones)", err=True)
    app = create_app(engine, settings)
    proxy = settings.portal.trusted_proxy
    try:
        server = create_server(app, host=host, port=port, threads=threads, ident="smartpurse",
                               **({"trusted_proxy": proxy, "trusted_proxy_count": 1,
                                   "trusted_proxy_headers": {"x-forwarded-for", "x-forwarded-proto"},
                                   "clear_untrusted_proxy_headers": True} if proxy else {}))
    except OSError as e:
        for part in local:
            part.stop()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    # A browser keeps the page's Secure cookie over plain HTTP from localhost only: say the address that works.
    shown = "localhost" if host in ("127.0.0.1", "localhost") else host
    url = f"http://{shown}:{server.effective_port}"  # type: ignore[union-attr]
    where = f"; codes go to {local_delivery}/mailbox.mbox and sms.txt" if local_delivery else ""
    previous = signal.signal(signal.SIGTERM, _stop)  # before the address is said: a supervisor may stop it at once
    try:
        emit(cli, {"url": url, "local_delivery": str(local_delivery) if local_delivery else None},
             f"the holders' page at {url}{where} (Ctrl-C to stop)")
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        app.extensions["smartpurse_sender"].stop()
        for part in local:
            part.stop()


@portal.command("log")
@click.option("--hours", type=click.IntRange(1), default=24, show_default=True, help="How far back.")
@click.option("--event", help="Only this event (login, code-refused, csrf-refused, not-theirs, card-lost, ...).")
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True,
              help="At most this many, newest first.")
@pass_cli
def log(cli: CliContext, hours: int, event: str | None, limit: int) -> None:
    """The page's security log: logins, refused codes and forms, cards asked for that were not the holder's."""
    from sqlalchemy import select

    from processing.schema.portal import portal_log

    p = portal_log.c
    query = select(p.at, p.event, p.client, p.holder_id, p.subject, p.detail).where(
        p.at >= int(time.time()) - hours * 3600)
    if event:
        query = query.where(p.event == event)
    with open_database(cli.db_url).connect() as conn:
        rows = [{"time": r.at, "event": r.event, "client": r.client, "holder_id": r.holder_id, "subject": r.subject,
                 "detail": r.detail} for r in conn.execute(query.order_by(p.id.desc()).limit(limit))]

    def text(data: list[dict[str, Any]]) -> str:
        if not data:
            return f"nothing logged in the last {hours} hour(s)"
        return table(["time (UTC)", "event", "client", "holder", "who", "detail"],
                     [(dt.datetime.fromtimestamp(r["time"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S"), r["event"],
                       r["client"], "" if r["holder_id"] is None else str(r["holder_id"]), r["subject"] or "",
                       r["detail"]) for r in data])

    emit(cli, rows, text)
