"""Holders hear about what processing posts: once, on the channels they consented to, through a real
SMTP server (STARTTLS and AUTH) and a real HTTP SMS gateway on 127.0.0.1 (docs/holders.md)."""

from __future__ import annotations

import threading
import urllib.parse
import urllib.request
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from sqlalchemy import func, select
from support.backoffice import DAY, NOW, World
from support.holders import SmtpServer, add_holder

from processing.holders.delivery import Deliverer, queue_status
from processing.holders.localgateway import LocalSmsGateway
from processing.holders.web import holder_app
from processing.schema.holders import Channel, holder_events, messages
from processing.synthetic import SynthCard
from purse.settings import IssuerSettings

ISSUER = IssuerSettings(name="Coffee House")


def _states(w: World) -> dict[tuple[str, str], int]:
    m = messages.c
    with w.engine.connect() as conn:
        return {(c, s): int(n) for c, s, n in conn.execute(select(m.channel, m.state, func.count())
                                                           .group_by(m.channel, m.state))}


def _sales(w: World) -> tuple[SynthCard, SynthCard, Path]:
    """Anna consents to both channels, Boris to none; both load, Anna buys twice, Boris once."""
    w.merchant(42)
    t = w.terminal(7, 42)
    anna, boris = w.card(1, load=50_000), w.card(2, load=10_000)
    w.register_card(anna)
    w.register_card(boris)
    add_holder(w.engine, anna.number)
    add_holder(w.engine, boris.number, name="Boris", email="boris@example.org", phone="+79123456780", consent=())
    t.purchase(anna, 1_200, NOW + 10)
    t.purchase(anna, 800, NOW + 20)
    t.purchase(boris, 100, NOW + 30)
    return anna, boris, t.close(w.tmp / "b1.spb")


def test_each_event_reaches_a_consenting_holder_once_per_channel(processing_db: World,
                                                                 servers: tuple[SmtpServer, LocalSmsGateway]) -> None:
    w = processing_db
    smtp, gateway = servers
    anna, _, batch = _sales(w)
    later = w.now + DAY  # a day after processing learned it all: every message is due
    w.process(batch)
    w.process(batch)  # a re-import: a duplicate, no event twice
    with w.engine.connect() as conn:
        kinds = sorted(conn.execute(select(holder_events.c.event_key)).scalars())
    assert [k.split(":")[0] for k in kinds] == ["load", "load", "purchases", "purchases"]
    worker = Deliverer(w.engine, smtp.settings(gateway), ISSUER, clock=lambda: later)
    done = worker.run()
    assert (done.planned, done.sent, done.suppressed, done.failed) == (8, 4, 4, 0)
    assert _states(w) == {("email", "sent"): 2, ("email", "suppressed"): 2, ("sms", "sent"): 2,
                          ("sms", "suppressed"): 2}
    mails = smtp.wait_for(2)
    assert sorted(m["Subject"] for m in mails) == ["500.00 RUB loaded onto your card **** " + anna.number[-4:],
                                                   "Your card **** " + anna.number[-4:] + " on 14 November 2023"]
    assert all(m["To"] == "anna@example.org" and m["List-Unsubscribe"].strip().startswith("<http://127.0.0.1:8025/unsub")
               and m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and m.is_multipart() for m in mails)
    digest = next(m for m in mails if "November" in m["Subject"])
    assert "you paid 20.00 RUB with your card" in digest.get_payload()[0].get_payload(decode=True).decode()
    assert [s.to for s in gateway.received] == ["79123456789", "79123456789"]
    assert all(s.sender == "Coffee" and anna.number[-4:] in s.text for s in gateway.received)
    status = queue_status(w.engine, later)
    assert {(r["channel"], r["state"]): r["cost"] for r in status["messages"]}[("sms", "sent")] == 2 * 350
    assert {r["reason"] for r in status["reasons"]} == {"no consent: the holder has not agreed to hear by email",
                                                        "no consent: the holder has not agreed to hear by sms"}
    again = Deliverer(w.engine, smtp.settings(gateway), ISSUER, clock=lambda: later + 60).run()
    assert (again.planned, again.sent) == (0, 0) and len(smtp.received) == 2 and len(gateway.received) == 2


def test_the_unsubscribe_link_and_a_stop_reply_withdraw_consent(processing_db: World,
                                                                servers: tuple[SmtpServer, LocalSmsGateway]) -> None:
    w = processing_db
    smtp, gateway = servers
    anna, _, batch = _sales(w)
    later = w.now + DAY  # a day after processing learned it all: every message is due
    w.process(batch)
    app = make_server("127.0.0.1", 0, holder_app(w.engine), handler_class=_Quiet)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{app.server_address[1]}"
    try:
        settings = smtp.settings(gateway, public_url=base)
        Deliverer(w.engine, settings, ISSUER, clock=lambda: later).run()
        link = smtp.wait_for(2)[0]["List-Unsubscribe"].strip().strip("<>")
        assert link.startswith(f"{base}/unsubscribe/")
        with urllib.request.urlopen(link) as page:  # a GET (a mail scanner's) changes nothing
            assert page.status == 200 and b'<form method="post"' in page.read()
        assert _consent(w, Channel.EMAIL)
        with urllib.request.urlopen(urllib.request.Request(link, data=b"List-Unsubscribe=One-Click")) as page:
            assert b"no more e-mails" in page.read()
        assert not _consent(w, Channel.EMAIL)
        with pytest.raises(urllib.error.HTTPError) as unknown:
            urllib.request.urlopen(urllib.request.Request(f"{base}/unsubscribe/{'x' * 24}", data=b""))
        assert unknown.value.code == 404
        stop = urllib.parse.urlencode({"from": "79123456789", "text": "STOP"}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/sms/inbound", data=stop)) as page:
            assert b"1 holder(s)" in page.read()
        assert not _consent(w, Channel.SMS)
        w.load(anna, 5_000, NOW + 2 * DAY)  # a new event after both withdrawals: nothing is sent
        w.ingest_loads()
        done = Deliverer(w.engine, settings, ISSUER, clock=lambda: later + 60).run()
        assert (done.sent, done.suppressed) == (0, 2) and len(smtp.received) == 2 and len(gateway.received) == 2
    finally:
        app.shutdown()
        app.server_close()


def _consent(w: World, channel: Channel) -> bool:
    from processing.holders.consent import consented
    from processing.schema.registry import holders

    with w.engine.connect() as conn:
        holder = conn.execute(select(holders.c.id).where(holders.c.email == "anna@example.org")).scalar_one()
        return consented(conn, holder, channel)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_retries_failures_quiet_hours_and_the_daily_cap(processing_db: World,
                                                       servers: tuple[SmtpServer, LocalSmsGateway],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    w = processing_db
    smtp, gateway = servers
    anna, _, batch = _sales(w)
    later = w.now + DAY
    w.process(batch)
    quiet = Deliverer(w.engine, smtp.settings(gateway, quiet_hours="0-23"), ISSUER, clock=lambda: later).run()
    assert quiet.sent == 0 and quiet.quiet_until is not None and quiet.quiet_until > later
    gateway.busy = 1  # the first SMS (the digest's) meets a busy gateway: retried after retry_seconds
    capped = smtp.settings(gateway, daily_cap=1, retry_seconds=60)
    first = Deliverer(w.engine, capped, ISSUER, clock=lambda: later).run()
    # the digest's e-mail goes, the load's e-mail hits the cap of one a day; the load's SMS goes
    assert (first.sent, first.retried, first.reasons["daily cap"]) == (2, 1, 1)
    assert len(smtp.wait_for(1)) == 1 and len(gateway.received) == 1
    early = Deliverer(w.engine, smtp.settings(gateway, daily_cap=2), ISSUER, clock=lambda: later + 30).run()
    assert early.sent == 0  # the retry's wait has not passed
    second = Deliverer(w.engine, smtp.settings(gateway, daily_cap=2), ISSUER, clock=lambda: later + 61).run()
    assert second.sent == 1 and len(gateway.received) == 2  # the digest's SMS, at its second attempt
    monkeypatch.setenv("SMARTPURSE_SMTP_PASSWORD", "wrong")
    w.load(anna, 5_000, NOW + 2 * DAY)
    w.ingest_loads()
    gateway.refuse.add("79123456789")
    failed = Deliverer(w.engine, smtp.settings(gateway), ISSUER, clock=lambda: later + 2 * DAY).run()
    assert failed.failed == 2 and failed.sent == 0
    reasons = {r["reason"] for r in queue_status(w.engine, later + 2 * DAY)["reasons"]}
    assert "the SMTP server refused the login: 535" in reasons
    assert "the SMS gateway refused it: 207 cannot send to it" in reasons


def test_holders_hear_before_their_points_lapse_once(processing_db: World,
                                                     servers: tuple[SmtpServer, LocalSmsGateway]) -> None:
    """A program whose points lapse after 30 days without a visit: a week before, the holder is told."""
    from sqlalchemy import insert

    from processing.schema.processing import programs

    w = processing_db
    smtp, gateway = servers
    w.merchant(42)
    t = w.terminal(7, 42)
    card = w.card(1, load=20_000)
    w.register_card(card)
    add_holder(w.engine, card.number, language="ru")
    t.purchase(card, 300, NOW + 10, program_id=5, earned=240)
    w.process(t.close(w.tmp / "b.spb"))
    with w.engine.begin() as conn:
        conn.execute(insert(programs).values(program_id=5, name="Кофейный клуб", version=1, expiry_days=30))
    settings = smtp.settings(gateway, expiry_warning_days=7, stale_days=3650)
    early = Deliverer(w.engine, settings, ISSUER, clock=lambda: NOW + 10 + 22 * DAY).run()
    expiring = [s.text for s in gateway.received if "сгорят" in s.text]
    assert expiring == []  # eight days before: not yet
    Deliverer(w.engine, settings, ISSUER, clock=lambda: NOW + 10 + 24 * DAY).run()
    Deliverer(w.engine, settings, ISSUER, clock=lambda: NOW + 10 + 25 * DAY).run()  # the same wait: once
    expiring = [s.text for s in gateway.received if "сгорят" in s.text]
    assert expiring == [f"Coffee House: 240 баллов по карте **** {card.number[-4:]} сгорят 14 декабря 2023."]
    assert early.failed == 0 and any("сгорят 14 декабря 2023" in str(m["Subject"]) for m in smtp.received)


def test_a_card_falling_below_the_threshold_tells_once_per_top_up(processing_db: World) -> None:
    w = processing_db
    anna, boris, batch = _sales(w)  # Anna ends at 480.00, Boris at 99.00
    w.process(batch, low_balance=100_00)
    w.process(batch, low_balance=100_00)
    with w.engine.connect() as conn:
        keys = sorted(k for k in conn.execute(select(holder_events.c.event_key)).scalars() if k.startswith("low"))
    assert keys == [f"low_balance:{boris.number}:1"]
