"""Holders and their messages from the command line, as the desk and the back office run them:
consent from the holders file and at the desk, its record, a preview of each message, the queue."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import fails, ok_json, run

CSV = ("name,phone,email,email_consent,sms_consent,language\n"
       "Анна,+7 912 000-00-00,anna@example.org,да,нет,ru\n"
       "Boris,+79120000001,boris@example.org,yes,,en\n"
       "Vera,+79120000002,vera@example.org,,,\n")


def test_consent_from_the_file_and_the_desk_is_kept_as_a_record(personalization_home: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    holders = tmp_path / "holders.csv"
    holders.write_text(CSV, encoding="utf-8")
    ok_json(capsys, "cards", "issue", "--from", str(holders), "--show-pins")
    ok_json(capsys, "cards", "issue", "--from", str(holders), "--show-pins")  # again: no second record
    anna = ok_json(capsys, "holders", "show", "--email", "anna@example.org")
    assert (anna["language"], anna["consent"]) == ("ru", {"email": True, "sms": False})
    assert [(h["channel"], h["granted"], h["source"]) for h in anna["history"]] == [("email", True, "csv"),
                                                                                    ("sms", False, "csv")]
    vera = ok_json(capsys, "holders", "show", "--phone", "8 912 000-00-02")
    assert vera["consent"] == {"email": False, "sms": False} and vera["history"] == []
    code, out, _ = run(capsys, "holders", "show", "--phone", "+79120000002")
    assert code == 0 and "nothing is sent to this holder" in out

    card = anna["cards"][0]
    done = ok_json(capsys, "holders", "consent", "--card", card, "--channel", "sms", "--grant", "--note", "desk 2")
    assert done["changed"] is True
    assert ok_json(capsys, "holders", "consent", "--card", card, "--channel", "sms", "--grant")["changed"] is False
    anna = ok_json(capsys, "holders", "show", "--card", card)
    assert anna["consent"]["sms"] is True and anna["history"][-1]["source"] == "desk"
    assert anna["history"][-1]["note"] == "desk 2"

    fails(capsys, "no such holder", "holders", "show", "--email", "nobody@example.org")
    fails(capsys, "name the holder by one of", "holders", "consent", "--card", card, "--email", "a@b.c",
          "--channel", "sms", "--grant")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,phone,email,sms_consent\nGleb,+79120000003,g@example.org,maybe\n", encoding="utf-8")
    code, _, err = run(capsys, "cards", "issue", "--from", str(bad), "--show-pins")
    assert code == 6 and "row 2: bad sms_consent 'maybe' (yes or no)" in err and "Traceback" not in err


def test_preview_shows_the_messages_and_what_an_sms_costs(personalization_home: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (personalization_home / "smartpurse.toml").write_text("[notify]\nsms_part_price = 350\n", encoding="utf-8")
    ru = ok_json(capsys, "notify", "preview", "load", "--language", "ru")
    assert ru["subject"].startswith("На карту **** 0029 зачислено 500,00")
    assert (ru["sms_encoding"], ru["sms_parts"]) == ("UCS-2", 1) and ru["sms_length"] <= 70
    assert ru["sms_cost"] == 350 and "Отписаться: http://127.0.0.1:8025/unsubscribe/" in ru["text"]
    en = ok_json(capsys, "notify", "preview", "blocked")
    assert en["sms_encoding"] == "GSM-7" and "is blocked" in en["sms"] and "&lt;" not in en["text"]
    code, out, _ = run(capsys, "notify", "preview", "purchases", "--language", "ru")
    assert code == 0 and "SMS (UCS-2" in out
    assert run(capsys, "notify", "preview", "nonsense")[0] == 2
    fails(capsys, "no load event 99", "notify", "preview", "load", "--event", "99")


def test_without_channels_set_up_messages_are_suppressed_and_said(personalization_home: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # No quiet hours: the run is at the wall clock's hour, and from 22:00 to 08:00 (the default) it would hold
    # the messages back instead of suppressing them.
    (personalization_home / "smartpurse.toml").write_text('[notify]\nquiet_hours = ""\n', encoding="utf-8")
    holders = tmp_path / "holders.csv"
    holders.write_text(CSV, encoding="utf-8")
    issued = ok_json(capsys, "cards", "issue", "--from", str(holders), "--show-pins")
    anna = next(c["card_number"] for c in issued["cards"] if c["holder"] == "Анна")
    ok_json(capsys, "cards", "block", anna, "--reason", "lost")  # an event for Anna, at once
    done = ok_json(capsys, "notify", "run")
    assert (done["planned"], done["sent"], done["suppressed"]) == (2, 0, 2)
    status = ok_json(capsys, "notify", "status")
    assert {r["reason"] for r in status["reasons"]} == {
        "no SMTP server set up ([notify] smtp_host)", "no consent: the holder has not agreed to hear by sms"}
    code, out, _ = run(capsys, "notify", "status")
    assert code == 0 and "suppressed" in out and "due now 0" in out


def test_a_campaign_dry_run_counts_reach_and_cost_then_launches_once(personalization_home: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (personalization_home / "smartpurse.toml").write_text("[notify]\nsms_part_price = 350\n", encoding="utf-8")
    holders = tmp_path / "holders.csv"
    holders.write_text(CSV.replace("нет,ru", "да,ru"), encoding="utf-8")
    ok_json(capsys, "cards", "issue", "--from", str(holders), "--show-pins")
    args = ("notify", "campaign", "autumn", "--subject", "en=Autumn sale", "--subject", "ru=Осенняя распродажа",
            "--text", "en=Double points on coffee all week.", "--text", "ru=Двойные баллы за кофе всю неделю.")
    dry = ok_json(capsys, *args, "--dry-run")
    rows = {r["channel"]: r for r in dry["channels"]}
    assert (dry["holders"], dry["launched"], rows["email"]["reached"], rows["email"]["no_consent"]) == (3, 0, 2, 1)
    assert (rows["sms"]["reached"], rows["sms"]["sms_parts"], rows["sms"]["cost"]) == (1, 1, 350)  # Anna, in Russian
    assert ok_json(capsys, *args)["launched"] == 3
    assert ok_json(capsys, *args)["launched"] == 0
    fails(capsys, "LANG=TEXT", "notify", "campaign", "x", "--subject", "de=Hallo", "--text", "en=hi")


def test_wallet_cards_say_what_is_missing_in_one_line(personalization_home: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    number = ok_json(capsys, "cards", "issue", "--count", "1", "--show-pins")["cards"][0]["card_number"]
    fails(capsys, "Apple Wallet cards are not set up", "notify", "wallet", number)
    fails(capsys, "Google Wallet is not set up", "notify", "wallet", number, "--google")
    fails(capsys, "is not in the registry", "notify", "wallet", "6277000000009999")
    (personalization_home / "smartpurse.toml").write_text(
        '[wallet]\npass_type_id = "pass.x"\ncertificate = "/nonexistent.pem"\nkey = "/nonexistent.key"\n'
        'wwdr_certificate = "/nonexistent.pem"\n', encoding="utf-8")
    fails(capsys, "cannot read the pass certificate or key", "notify", "wallet", number)
