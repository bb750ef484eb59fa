"""The demo's card holders and what they hear: contacts with consent on a share of the cards, and at the
month's end the messages processing's events make, delivered to a local SMTP server and a local SMS
gateway the demo starts itself (docs/holders.md)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from personalization.holders_csv import HolderRow
from personalization.registry import give_cards_holders
from processing.holders.consent import record_consent
from processing.holders.delivery import Deliverer, queue_status
from processing.holders.localgateway import LocalSmsGateway, LocalSmtpServer
from processing.schema.holders import Channel, ConsentSource
from purse.settings import IssuerSettings, NotifySettings

HOLDER_SHARE = 5  # one card in five has a holder who left contacts
DEMO_LOW_BALANCE = 50_00  # a card below 50.00 tells its holder
FIRST_NAMES = ("Anna", "Boris", "Vera", "Gleb", "Daria", "Egor", "Zoya", "Ivan", "Kira", "Lev")
# Consent by the holder's position: most agree to both channels, some to e-mail or SMS only, some to none.
CONSENTS: tuple[tuple[Channel, ...], ...] = (
    (Channel.EMAIL, Channel.SMS), (Channel.EMAIL,), (), (Channel.EMAIL, Channel.SMS), (Channel.SMS,),
    (Channel.EMAIL, Channel.SMS), (Channel.EMAIL, Channel.SMS), (Channel.EMAIL,),
)


def add_holders(engine: Engine, numbers: Sequence[str], at: dt.datetime) -> int:
    """Holders for every ``HOLDER_SHARE``-th card: name, e-mail, phone, language, consent from the CSV."""
    pairs = [(number, HolderRow(0, f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {i + 1}", f"+7900{i + 1:07d}",
                                f"holder{i + 1}@demo.example", language="ru" if i % 2 else "en"))
             for i, number in enumerate(numbers[::HOLDER_SHARE])]
    ids = give_cards_holders(engine, pairs)
    with engine.begin() as conn:
        for i, (number, _) in enumerate(pairs):
            for channel in CONSENTS[i % len(CONSENTS)]:
                record_consent(conn, ids[number], channel, True, ConsentSource.CSV, at, "demo holders file")
    return len(pairs)


def deliver(engine: Engine, issuer: IssuerSettings, now: int, out: Path) -> dict[str, Any]:
    """Run the delivery worker against a local SMTP server and SMS gateway; what was sent, suppressed, why.

    The e-mails land in ``out/mailbox.mbox`` and the SMS in ``out/sms.txt``, to read."""
    out.mkdir(parents=True, exist_ok=True)
    for old in ("mailbox.mbox", "sms.txt"):
        (out / old).write_bytes(b"")  # a run of its own: what an earlier demo delivered is not kept
    smtp = LocalSmtpServer(keep_in=out / "mailbox.mbox").start()
    gateway = LocalSmsGateway(keep_in=out / "sms.txt").start()
    previous = os.environ.get("SMARTPURSE_SMS_KEY")
    os.environ["SMARTPURSE_SMS_KEY"] = gateway.api_id
    try:
        settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none",
                                  sms_url=gateway.url, sms_sender="Demo", sms_part_price=250, quiet_hours="",
                                  mail_from="smartpurse demo <cards@demo.example>")
        run = Deliverer(engine, settings, issuer, clock=lambda: now).run()
        status = queue_status(engine, now)
    finally:
        if previous is None:
            os.environ.pop("SMARTPURSE_SMS_KEY", None)
        else:
            os.environ["SMARTPURSE_SMS_KEY"] = previous
        smtp.stop()
        gateway.stop()
    sent = {r["channel"]: r["count"] for r in status["messages"] if r["state"] == "sent"}
    return {"emails": len(smtp.received), "sms": len(gateway.received), "sent": sent,
            "sms_cost": sum(r["cost"] for r in status["messages"] if r["channel"] == "sms"),
            "suppressed": {r["reason"]: r["count"] for r in status["reasons"] if r["state"] == "suppressed"},
            "failed": run.failed, "interrupted": run.interrupted, "folder": str(out)}
