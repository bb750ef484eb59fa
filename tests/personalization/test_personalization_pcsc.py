"""Issuing into cards in a PC/SC reader: real pcscd, real vpcd, the virtual card behind them.

The "operator" is the ``say`` callback: when the issuer asks for a blank card, it puts
one in the vpcd reader, exactly as staff would at a desktop reader.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from support import pcsc as pcsc_env
from support.issuer import PASSPHRASE

from personalization.holders_csv import parse_holders
from personalization.issuing import (
    IssueFailed,
    card_profile,
    issue_to_reader,
    issuer_sam,
    pcsc_presenter,
    requests_for_holders,
)
from personalization.keyfiles import load_issuer
from processing.db import open_database
from processing.schema.registry import card_numbers, cards
from purse.card.applet import PurseApplet
from purse.card.storage import MemoryStorage
from purse.home import Home
from purse.protocol import CardState, KeyRef
from purse.session import PurseSession
from purse.transport.pcsc import PcscTransport

CSV = b"name,phone,email,pin\nAnna,+79120000000,anna@example.org,2468\nBoris,+79120000001,boris@example.org,\n"


def test_issue_holders_into_cards_in_a_reader(pcsc: pcsc_env.PcscEnv, personalization_home: Path,
                                              tmp_path: Path) -> None:
    home = Home.open(personalization_home)
    store = load_issuer(home, PASSPHRASE)
    engine = open_database(f"sqlite:///{tmp_path / 'reader.db'}")
    profile = card_profile(home, store)
    sam = issuer_sam(store)
    inserted: list[MemoryStorage] = []
    tear_first = [True]

    def operator(message: str) -> None:
        if message.startswith("insert a blank card"):
            card = pcsc.serve_blank()
            if tear_first[0]:  # the first card is pulled out during its second PUT KEY
                tear_first[0] = False
                card.writes, card.tear_at = 0, 2
            inserted.append(card)

    requests = requests_for_holders(parse_holders(CSV))
    present = pcsc_presenter(sam, pcsc.reader, operator, timeout=20)
    with pytest.raises(IssueFailed, match=r"row 2 \(Anna\) failed.*0 card\(s\) issued"):
        issue_to_reader(engine, sam, profile, requests, "desk", pcsc.reader, present)
    torn = PurseApplet(inserted[0])
    assert torn.state == CardState.BLANK  # pulled before LOCK: still blank, re-usable
    with engine.connect() as conn:
        (reserved,) = conn.execute(select(card_numbers.c.number, card_numbers.c.uid)).all()
    assert reserved.uid is None  # the number goes back to the batch

    report = issue_to_reader(engine, sam, profile, requests, "desk", pcsc.reader, present)
    assert [c.holder for c in report.issued] == ["Anna", "Boris"]
    assert report.issued[0].number == reserved.number  # the reserved number was reused, none lost
    for storage, card in zip(inserted[1:], report.issued, strict=True):
        applet = PurseApplet(storage)
        assert applet.state == CardState.PERSONALIZED and applet.uid == card.uid
        assert applet.number_bcd.hex() == card.number
    with engine.connect() as conn:
        rows = conn.execute(select(cards.c.number, cards.c.reader).order_by(cards.c.number)).all()
    assert [r.number for r in rows] == [c.number for c in report.issued]
    assert all(r.reader == pcsc.reader for r in rows)

    # The last card is still in the reader: through pcscd it is genuine and holds Boris's number and PIN.
    with PcscTransport(pcsc.reader) as transport:
        session = PurseSession(transport, sam)
        info = session.select()
        assert info.number == report.issued[1].number and info.state == CardState.PERSONALIZED
        session.open(KeyRef.DEBIT, 1)
        session.verify_pin(report.issued[1].pin)
