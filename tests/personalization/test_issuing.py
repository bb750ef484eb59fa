"""Issuing into virtual card images: real applet, real registry, real terminals using exported keys."""

from __future__ import annotations

import csv
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from stdnum import luhn
from support.issuer import PASSPHRASE

from personalization import lifecycle, registry
from personalization.holders_csv import HoldersCsvError, parse_holders
from personalization.imagefiles import write_image
from personalization.issuing import (
    IssueFailed,
    card_profile,
    issue_to_images,
    issuer_sam,
    requests_for_count,
    requests_for_holders,
)
from personalization.keyfiles import load_issuer, write_role_keys
from personalization.keystore import rotate_keystore
from personalization.numbering import card_number
from processing.db import open_database
from processing.schema.registry import card_numbers, card_transfers, cards, holders
from purse.card import layout as L
from purse.card.applet import PurseApplet
from purse.card.storage import CardImageError, FileStorage
from purse.protocol import CardState, KeyRef
from purse.rolekeys import load_role_keys, role_key_path
from purse.sam import MissingKey
from purse.session import PurseSession
from purse.terminal import CreditTerminal, Terminal
from purse.terminal_log import TerminalLog
from purse.transport.virtual import VirtualTransport

CSV = b"""name,phone,email,program,tier,pin
Anna Ivanova,+7 912 345-67-89,Anna@Example.org,7,1,2468
Boris Petrov,+79120000001,boris@example.org,,,
"""


def _world(home_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    from purse.home import Home

    home = Home.open(home_path)
    store = load_issuer(home, PASSPHRASE)
    return home, store, open_database(db_url), card_profile(home, store)


def _issued(engine) -> list[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return list(conn.execute(select(cards.c.number).order_by(cards.c.number)).scalars())


def test_issue_count_writes_locked_cards_and_registers_them(personalization_home: Path,
                                                           personalization_db: str) -> None:
    home, store, engine, profile = _world(personalization_home, personalization_db)
    report = issue_to_images(engine, issuer_sam(store), profile, requests_for_count(5), "b1", home.cards_dir)
    assert [c.number for c in report.issued] == [card_number("627700", i) for i in range(1, 6)]
    assert _issued(engine) == [c.number for c in report.issued]
    for card in report.issued:
        assert luhn.is_valid(card.number)
        applet = PurseApplet.from_image_bytes((home.cards_dir / f"{card.number}.card").read_bytes())
        assert applet.state == CardState.PERSONALIZED and applet.uid == card.uid
        assert applet.number_bcd.hex() == card.number and applet.key_version == 1
        assert applet.expiry == profile.expiry and applet.max_balance == profile.max_balance
        assert 0 not in applet.keys  # the transport key is gone: the card is locked
    again = issue_to_images(engine, issuer_sam(store), profile, requests_for_count(5), "b1", home.cards_dir)
    assert again.issued == [] and again.already_issued == 5


def test_failure_mid_batch_keeps_what_was_issued_and_resumes_without_gaps(personalization_home: Path,
                                                                          personalization_db: str) -> None:
    home, store, engine, profile = _world(personalization_home, personalization_db)
    folder = home.cards_dir
    blocker = folder / f"{card_number('627700', 4)}.card"
    blocker.mkdir()  # the 4th image cannot be written (renaming onto a folder fails): an I/O error mid-batch
    requests = requests_for_count(6)
    with pytest.raises(IssueFailed, match=r"card 4 failed.*3 card\(s\) issued.*--batch b2") as e:
        issue_to_images(engine, issuer_sam(store), profile, requests, "b2", folder, chunk=4)
    assert "\n" not in str(e.value)
    assert _issued(engine) == [card_number("627700", i) for i in range(1, 4)]
    blocker.rmdir()
    report = issue_to_images(engine, issuer_sam(store), profile, requests, "b2", folder, chunk=4)
    assert report.already_issued == 3 and len(report.issued) == 3
    assert _issued(engine) == [card_number("627700", i) for i in range(1, 7)]  # the reserved number was reused
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(card_numbers)
                            .where(card_numbers.c.state != "issued")).scalar() == 0
    _assert_images_are_the_issued_cards(engine, folder)


def _assert_images_are_the_issued_cards(engine, folder: Path) -> None:  # type: ignore[no-untyped-def]
    """Every registered card's image is that card, locked; no temporary file is left over."""
    with engine.connect() as conn:
        rows = conn.execute(select(cards.c.number, cards.c.uid, cards.c.image)).all()
    assert rows
    for number, uid, image in rows:
        assert Path(image) == folder / f"{number}.card"
        applet = PurseApplet.from_image_bytes(Path(image).read_bytes())
        assert applet.state == CardState.PERSONALIZED and applet.number_bcd.hex() == number and applet.uid == uid
    assert list(folder.glob("*.tmp")) == []


def test_partial_images_left_by_a_crash_are_rewritten_on_resume(personalization_home: Path,
                                                                personalization_db: str) -> None:
    """A crash between creating a card's image under its final name and registering the card
    leaves a short, empty or stale file there; resuming the batch makes it the right card."""
    home, store, engine, profile = _world(personalization_home, personalization_db)
    folder = home.cards_dir
    fourth, fifth, sixth = (folder / f"{card_number('627700', i)}.card" for i in (4, 5, 6))
    fourth.mkdir()
    requests = requests_for_count(6)
    with pytest.raises(IssueFailed):  # cards 1-3 registered; 4-6 reserved in the same chunk, not registered
        issue_to_images(engine, issuer_sam(store), profile, requests, "crash", folder, chunk=6, workers=0)
    reserved = registry.reservations(engine, "crash")
    assert sorted(reserved) == [3, 4, 5] and _issued(engine) == [card_number("627700", i) for i in range(1, 4)]
    fourth.rmdir()
    first = (folder / f"{card_number('627700', 1)}.card").read_bytes()
    fourth.write_bytes(first[: len(first) // 2])  # killed in the middle of writing it
    fifth.write_bytes(b"")  # killed right after creating it
    sixth.write_bytes(first)  # a whole image, but not of this card
    for debris in (fourth, fifth):
        with pytest.raises(CardImageError):  # a terminal refuses such a file, never takes it for a card
            FileStorage(debris, L.APP_MEMORY, L.JOURNAL)
    report = issue_to_images(engine, issuer_sam(store), profile, requests, "crash", folder, chunk=6, workers=0)
    assert [c.number for c in report.issued] == [res.number for _, res in sorted(reserved.items())]
    assert [c.uid for c in report.issued] == [res.uid for _, res in sorted(reserved.items())]
    assert _issued(engine) == [card_number("627700", i) for i in range(1, 7)]
    _assert_images_are_the_issued_cards(engine, folder)


def test_a_write_error_on_a_new_image_leaves_no_file_behind(tmp_path: Path) -> None:
    """A real write failure after the image was created under its final name (the file size
    limit: EFBIG), in a child process so the limit binds nothing else: no short file stays."""
    target = tmp_path / "6277000000000018.card"
    code = ("import resource, sys; from pathlib import Path; from personalization.imagefiles import write_image\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
            "try:\n    write_image(Path(sys.argv[1]), bytes(4096))\n"
            "except OSError as e:\n    print(e.errno)\n")
    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(errno.EFBIG)
    assert list(tmp_path.iterdir()) == []
    write_image(target, bytes(4096))  # without the limit the same call writes the whole image
    assert target.read_bytes() == bytes(4096)


@pytest.mark.slow
def test_a_killed_issuing_process_resumes_without_duplicates_or_lost_numbers(personalization_home: Path,
                                                                             tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    pins = tmp_path / "pins.csv"
    command = [sys.executable, "-c", "import cli; cli.main()", "--db", db, "cards", "issue", "--count", "3000",
               "--chunk", "50", "--batch", "big", "--pins", str(pins)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    engine = open_database(db)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_issued(engine)) < 300:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(_issued(engine))
    assert 300 <= killed_at < 3000, "the process must die in the middle of the batch"
    with open(pins, encoding="utf-8-sig", newline="") as f:
        pinned = {row["number"]: row["pin"] for row in csv.DictReader(f)}
    assert set(_issued(engine)) <= set(pinned), "every registered card's PIN reached the disk first"
    assert all(len(pin) == 4 and pin.isdigit() for pin in pinned.values())
    home, store, engine, profile = _world(personalization_home, db)
    report = issue_to_images(engine, issuer_sam(store), profile, requests_for_count(3000), "big", home.cards_dir,
                             chunk=500)
    assert report.already_issued == killed_at
    assert _issued(engine) == [card_number("627700", i) for i in range(1, 3001)]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(card_numbers)).scalar() == 3000
    _assert_images_are_the_issued_cards(engine, home.cards_dir)


def _pos_and_credit(home, store, terminal_id: int = 7):  # type: ignore[no-untyped-def]
    pos_path = role_key_path(home, "pos", terminal_id)
    write_role_keys(pos_path, store.role_keys("pos", terminal_id, 1), PASSPHRASE)
    credit_path = role_key_path(home, "credit")
    write_role_keys(credit_path, store.role_keys("credit", 900), PASSPHRASE)
    return load_role_keys(pos_path, PASSPHRASE), load_role_keys(credit_path, PASSPHRASE)


def _terminal(keys, image: Path) -> Terminal:  # type: ignore[no-untyped-def]
    log = TerminalLog(":memory:", terminal_id=keys.terminal_id, merchant_id=keys.merchant_id, log_key=keys.log_key)
    return Terminal(VirtualTransport.open(image), keys.sam(), log, terminal_id=keys.terminal_id,
                    merchant_id=keys.merchant_id)


def _load(keys, image: Path, amount: int) -> None:  # type: ignore[no-untyped-def]
    log = TerminalLog(":memory:", terminal_id=keys.terminal_id, merchant_id=0, log_key=keys.log_key)
    CreditTerminal(VirtualTransport.open(image), keys.sam(), log, terminal_id=keys.terminal_id).load(amount)


def test_issued_cards_work_with_exported_role_keys_across_a_rotation(personalization_home: Path,
                                                                     tmp_path: Path) -> None:
    home, store, engine, profile = _world(personalization_home, f"sqlite:///{tmp_path / 'r.db'}")
    (v1,) = issue_to_images(engine, issuer_sam(store), profile, requests_for_count(1), "v1", home.cards_dir).issued
    store = rotate_keystore(home, PASSPHRASE)
    profile = card_profile(home, store)
    (v2,) = issue_to_images(engine, issuer_sam(store), profile, requests_for_count(1), "v2", home.cards_dir).issued
    pos, credit = _pos_and_credit(home, store)
    assert pos.versions(KeyRef.DEBIT) == [1, 2]
    for card, version in ((v1, 1), (v2, 2)):
        image = Path(card.where)
        assert PurseApplet.from_image_bytes(image.read_bytes()).key_version == version
        _load(credit, image, 10_000)
        receipt = _terminal(pos, image).debit(2_550)
        assert receipt.balance == 7_450 and receipt.card_number == card.number
    with pytest.raises(MissingKey):  # a POS key file cannot load value: it has no CREDIT key
        _load(pos, Path(v2.where), 100)
    transport = VirtualTransport.open(Path(v2.where))
    session = PurseSession(transport, pos.sam())
    session.select()
    with pytest.raises(MissingKey):
        session.open(KeyRef.CREDIT, 7)


def test_csv_holders_get_their_pin_and_program_and_a_rerun_skips_them(personalization_home: Path,
                                                                      personalization_db: str) -> None:
    home, store, engine, profile = _world(personalization_home, personalization_db)
    rows = parse_holders(CSV)
    report = issue_to_images(engine, issuer_sam(store), profile, requests_for_holders(rows), "csv", home.cards_dir)
    anna, boris = report.issued
    assert anna.pin == "2468" and anna.holder == "Anna Ivanova" and boris.pin.isdigit()
    card = PurseApplet.from_image_bytes(Path(anna.where).read_bytes())
    assert int.from_bytes(card.slots[0][:2], "big") == 7 and card.slots[0][6] == 1
    transport = VirtualTransport.open(Path(anna.where))
    session = PurseSession(transport, issuer_sam(store))
    session.select()
    session.open(KeyRef.DEBIT, 1)
    session.verify_pin("2468")
    with engine.connect() as conn:
        emails = set(conn.execute(select(holders.c.email)).scalars())
    assert emails == {"anna@example.org", "boris@example.org"}
    again = issue_to_images(engine, issuer_sam(store), profile, requests_for_holders(rows), "another-name",
                            home.cards_dir)
    assert again.issued == [] and set(again.skipped_holders) == emails


@pytest.mark.parametrize(("data", "expected"), [
    (b"name,phone\nA,+79120000000\n", "missing column(s) email"),
    (b"name,phone,email\nA\xff,+79120000000,a@b.org\n", "not UTF-8"),
    (b"name,phone,email\nA,12,a@b.org\n", "row 2: bad phone"),
    (b"name,phone,email\nA,+79120000000,not-an-email\n", "row 2: bad e-mail"),
    (b"name,phone,email\nA,+79120000000,a@b.org\nB,+79120000001,A@B.org\n", "row 3: duplicate holder"),
    (b"name,phone,email,pin\nA,+79120000000,a@b.org,12\n", "row 2: bad PIN"),
    (b"name,phone,email\n", "no holders"),
])
def test_bad_csv_is_reported_per_row(data: bytes, expected: str) -> None:
    with pytest.raises(HoldersCsvError) as e:
        parse_holders(data, "h.csv")
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_every_bad_row_is_reported_at_once() -> None:
    data = b"name,phone,email\nA,1,a@b.org\n,+79120000001,b@b.org\nC,+79120000002,bad\n"
    with pytest.raises(HoldersCsvError) as e:
        parse_holders(data)
    assert [p.row for p in e.value.problems] == [2, 3, 4]


def test_replace_blocks_the_old_card_and_records_the_transfer(personalization_home: Path,
                                                              personalization_db: str) -> None:
    home, store, engine, profile = _world(personalization_home, personalization_db)
    rows = parse_holders(CSV)
    (old, _) = issue_to_images(engine, issuer_sam(store), profile, requests_for_holders(rows), "r",
                               home.cards_dir).issued
    pos, credit = _pos_and_credit(home, store)
    _load(credit, Path(old.where), 5_000)
    result, report = lifecycle.replace(engine, home, store, profile, old.number, "damaged")
    new = result["new"]
    assert result["balance_on_card"] == 5_000 and report.issued[0].number == new
    old_row, new_row = registry.card_row(engine, old.number), registry.card_row(engine, new)
    assert old_row["state"] == "replaced" and old_row["replaced_by"] == new and old_row["blocked_at"] is not None
    assert new_row["replaces"] == old.number and new_row["holder_id"] == old_row["holder_id"]
    assert new_row["program"] == 7
    with engine.connect() as conn:
        transfer = conn.execute(select(card_transfers)).one()
    assert (transfer.from_number, transfer.to_number, transfer.credited_at) == (old.number, new, None)
    with pytest.raises(Exception, match="already replaced"):
        lifecycle.replace(engine, home, store, profile, old.number, "again")
