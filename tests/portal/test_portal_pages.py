"""What a holder sees and does on their page, served for real: figures as of the last batch, points and the
prize, the statement as a page, a CSV and a PDF (read back by pdftotext), consent, a payout request, a
login by phone, the Wallet card."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from support.portal import Portal, portal_server, settings_for
from support.wallet import PASSPHRASE, make_pki, wallet_settings

from processing.holders.consent import consent_history, consent_state
from processing.schema.holders import holder_requests
from processing.schema.registry import cards


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_holder_sees_balance_points_tier_prize_and_lapse_as_of_the_last_batch(portal: Portal) -> None:
    p, number = portal, portal.holders.anna.number
    anna = p.client()
    assert anna.log_in(number, p.smtp, p.holders.anna_email).status == 303
    page = _text(anna.get("/cards").text)
    assert "Anna" in page and f"•••• {number[-4:]}" in page and "As of the last processed transactions" in page
    assert "Balance 480.00 RUB" in page  # 500.00 loaded, 12.00 and 8.00 spent
    assert "Coffee club 70 points · Tier Silver, discount 3.0 %" in page
    assert "Prize at 100 points: A free coffee: 30 points to go" in page
    assert "70 points lapse on" in page  # 90 days after the last visit
    anna.get("/language/ru")
    ru = _text(anna.get(f"/cards/{number}").text)
    assert "Баланс 480,00" in ru and "осталось 30 баллов" in ru and "Призов пока нет." in ru


def test_prizes_won_are_listed_with_where_they_were_won(portal: Portal) -> None:
    p, number = portal, portal.holders.boris.number
    boris = p.client()
    boris.log_in(number, p.smtp, p.holders.boris_email)
    page = _text(boris.get(f"/cards/{number}").text)
    assert "Prizes won" in page and "Coffee club, A free coffee (Cafe North)" in page
    assert "90 points to go" in page  # 10 left after the prize reset


def test_the_statement_filters_and_downloads_as_csv_and_pdf(portal: Portal, tmp_path: Path) -> None:
    p, number = portal, portal.holders.anna.number
    anna = p.client()
    anna.log_in(number, p.smtp, p.holders.anna_email)
    every = anna.get(f"/cards/{number}/statement")
    assert every.text.count('<tr class="kind-') == 3  # the load and two purchases
    bought = anna.get(f"/cards/{number}/statement?kind=purchase")
    assert bought.text.count('<tr class="kind-purchase"') == 2 and 'class="kind-load"' not in bought.text
    assert "Cafe North" in bought.text and "-12.00 RUB" in bought.text
    later = anna.get(f"/cards/{number}/statement?from=2099-01-01")
    assert "Nothing in this period." in later.text
    sheet = anna.get(f"/cards/{number}/statement.csv?kind=purchase")
    assert sheet.headers["Content-Disposition"] == f'attachment; filename="statement-{number[-4:]}.csv"'
    rows = list(csv.reader(io.StringIO(sheet.text.lstrip("\ufeff"))))
    assert rows[0] == ["Time", "What", "Where", "Amount", "Balance after", "Points after"]
    assert [r[1:] for r in rows[1:]] == [["Purchase", "Cafe North", "-12.00", "488.00", "30"],
                                         ["Purchase", "Cafe North", "-8.00", "480.00", "70"]]
    anna.get("/language/ru")
    sheet_ru = anna.get(f"/cards/{number}/statement.csv")
    assert sheet_ru.text.lstrip("\ufeff").splitlines()[1].split(";")[1:4] == ["Пополнение", "", "500,00"]
    anna.get("/language/en")
    pdf = anna.get(f"/cards/{number}/statement.pdf")
    assert pdf.status == 200 and pdf.headers["Content-Type"] == "application/pdf" and pdf.body.startswith(b"%PDF")
    (tmp_path / "s.pdf").write_bytes(pdf.body)
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "s.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "Coffee House: Statement •••• " + number[-4:] in text
    assert "Cafe North" in text and "-12.00 RUB" in text and "480.00 RUB" in text


def test_consent_changed_on_the_page_is_recorded_as_self_service(portal: Portal) -> None:
    p, number = portal, portal.holders.anna.number
    anna = p.client()
    anna.log_in(number, p.smtp, p.holders.anna_email)
    form = anna.get("/consent")
    assert 'id="consent-email" checked' in form.text and 'id="consent-sms" checked' in form.text
    saved = anna.post("/consent", {"sms": "on"})  # e-mail unticked
    assert "Saved." in saved.text and 'id="consent-email" checked' not in saved.text
    with p.world.engine.connect() as conn:
        holder_id = conn.execute(select(cards.c.holder_id).where(cards.c.number == number)).scalar_one()
        assert consent_state(conn, [holder_id]) == {(holder_id, "email"): False, (holder_id, "sms"): True}
        newest = consent_history(conn, holder_id)[-1]
    assert (newest["channel"], newest["granted"], newest["source"]) == ("email", False, "self-service")


def test_a_payout_at_return_is_asked_for_once(portal: Portal) -> None:
    p, number = portal, portal.holders.anna.number
    anna = p.client()
    anna.log_in(number, p.smtp, p.holders.anna_email)
    form = anna.get(f"/cards/{number}/payout")
    assert "About 480.00 RUB: balance 480.00 RUB as of the last processed transactions, deposit 0.00 RUB" \
        in _text(form.text)
    assert "Noted." in anna.post(f"/cards/{number}/payout").text
    anna.get(f"/cards/{number}/payout")
    assert anna.post(f"/cards/{number}/payout").status == 200  # a second click finds the first
    page = anna.get(f"/cards/{number}")
    assert 'id="payout-requested"' in page.text and 'id="ask-payout"' not in page.text
    with p.world.engine.connect() as conn:
        rows = conn.execute(select(holder_requests.c.kind, holder_requests.c.source, holder_requests.c.done_at)
                            .where(holder_requests.c.card_number == number)).all()
    assert [tuple(r) for r in rows] == [("payout", "self-service", None)]


def test_a_holder_logs_in_by_phone_with_a_code_by_sms(portal: Portal) -> None:
    p = portal
    phone = p.client()
    asked = phone.ask_code("+7 912 345-67-80")  # Boris's phone, as a person writes it
    assert asked.status == 200
    deadline = time.monotonic() + 15
    while not p.gateway.received and time.monotonic() < deadline:
        time.sleep(0.05)
    (sms,) = p.gateway.received
    assert sms.to == "79123456780" and "Coffee House" in sms.text
    code = re.search(r"\b(\d{6})\b", sms.text)
    assert code is not None
    assert phone.post("/login/code", {"token": asked.field("token"), "code": code.group(1)}).status == 303
    page = phone.get("/cards").text
    assert f"card-{p.holders.boris.number}" in page and f"card-{p.holders.anna.number}" not in page


@pytest.fixture
def wallet_portal(portal: Portal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Portal]:
    """The same world served with Apple Wallet cards set up."""
    monkeypatch.setenv("SMARTPURSE_PASS_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("SMARTPURSE_GOOGLE_KEY_PASSPHRASE", PASSPHRASE)
    settings = settings_for(portal.smtp.settings(portal.gateway))
    from dataclasses import replace

    settings = replace(settings, wallet=wallet_settings(make_pki(tmp_path / "pki")))
    with portal_server(portal.world.engine, settings, portal.clock) as url:
        yield replace(portal, url=url)


def test_the_holder_downloads_their_wallet_card(wallet_portal: Portal) -> None:
    p, number = wallet_portal, wallet_portal.holders.anna.number
    anna = p.client()
    anna.log_in(number, p.smtp, p.holders.anna_email)
    page = anna.get(f"/cards/{number}").text
    assert 'id="wallet"' in page and "https://pay.google.com/gp/v/save/" in page
    answer = anna.get(f"/cards/{number}/wallet.pkpass")
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/vnd.apple.pkpass"
    card = json.loads(zipfile.ZipFile(io.BytesIO(answer.body)).read("pass.json"))
    assert card["serialNumber"] == number
    fields = {f["key"]: f["value"] for f in card["storeCard"]["primaryFields"] + card["storeCard"]["secondaryFields"]}
    assert (fields["balance"], fields["points"]) == (480.0, 70)


def test_a_card_reported_lost_tells_its_holder_the_replacement_is_on_its_way(portal: Portal) -> None:
    """The blocked event says who blocked it: the holder's message does not send them to the desk for a card
    the page has already requested."""
    from processing.holders.delivery import Deliverer
    from purse.settings import IssuerSettings

    p, number = portal, portal.holders.anna.number
    anna = p.client()
    anna.log_in(number, p.smtp, p.holders.anna_email)
    anna.get(f"/cards/{number}/lost")
    assert "blocked" in anna.post(f"/cards/{number}/lost", {"why": "lost"}).text
    had = len(p.smtp.received)
    Deliverer(p.world.engine, p.smtp.settings(p.gateway), IssuerSettings(name="Coffee House"),
              clock=lambda: p.clock.now + 60).run()
    mail = [m for m in p.smtp.received[had:] if "is blocked" in m["Subject"]]
    assert len(mail) == 1
    body = mail[0].get_body(("plain",)).get_content()
    assert "as you reported it on your page" in body and "A replacement card is requested" in body
    sms = [s.text for s in p.gateway.received if "blocked" in s.text]
    assert sms == [f"Coffee House: card **** {number[-4:]} is blocked. A new card is requested: we will tell you "
                   "when it is ready."]
