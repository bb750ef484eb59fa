"""Sends login codes from a thread of its own, through the holder channels (``[notify]``'s SMTP server and
SMS gateway).

Off the request on purpose: a page that answered only after the SMTP server did would answer a card
nobody holds faster than a real one, and that difference is enough to sort card numbers. So the page
queues the code and answers at once, whoever holds the card; this thread delivers, and logs a code
it could not deliver. A login code is the holder's own request, so it goes out whatever their
consent to the issuer's messages says, at any hour, with no unsubscribe link.
"""

from __future__ import annotations

import html
import queue
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from portal.audit import record
from portal.login import CodeToSend
from portal.words import WORDS
from processing.holders.channels import ChannelMissing, DeliveryError, EmailChannel, SmsGateway
from processing.holders.render import Rendered
from purse.settings import NotifySettings

__all__ = ["CodeSender", "code_message"]


def code_message(send: CodeToSend, language: str, issuer: str, minutes: int) -> Rendered:
    words = WORDS[language]
    text = words["code_text"].format(issuer=issuer, code=send.code, minutes=minutes)
    page = (f'<!doctype html><html lang="{language}"><head><meta charset="utf-8"></head><body>'
            f"<p>{html.escape(text)}</p></body></html>")
    return Rendered(f"{words['code_subject']}: {issuer}", text + "\n", page, text)


class CodeSender:
    """A daemon thread that delivers queued codes; ``stop`` lets it finish what is queued."""

    def __init__(self, engine: Engine, settings: NotifySettings, issuer: str, minutes: int, default_language: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine, self.settings, self.issuer, self.minutes = engine, settings, issuer, minutes
        self.default_language, self.clock = default_language, clock
        self._queue: queue.Queue[tuple[CodeToSend, str, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="portal-code-sender", daemon=True)
        self._thread.start()

    def submit(self, send: CodeToSend, client: str, subject: str) -> None:
        self._queue.put((send, client, subject))

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            send, client, subject = item
            try:
                self._deliver(send)
                event, detail = "code-sent", send.channel
            except (ChannelMissing, DeliveryError) as e:
                event, detail = "not-delivered", f"{send.channel}: {e}"
            with self.engine.begin() as conn:
                record(conn, int(self.clock()), event, client, subject=subject, detail=detail)

    def _deliver(self, send: CodeToSend) -> None:
        language = send.language if send.language in WORDS else self.default_language
        message = code_message(send, language, self.issuer, self.minutes)
        if send.channel == "email":
            EmailChannel(self.settings).send(send.address, message, "")
        else:
            SmsGateway(self.settings).send(send.address, message.sms)
