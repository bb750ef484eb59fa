"""The terminal CLI end to end: a real home with a sealed keystore, role key files, card images.

Commands run in process through ``cli.main`` (the real error boundary), so a failure is
seen exactly as a user sees it: one line on stderr and the exit code. Bad input must
leave the card image byte for byte as it was.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from support import REPO

import cli
from personalization.issuing import CardRequest, card_profile, issue_to_images, issuer_sam
from personalization.keyfiles import write_role_keys
from personalization.keystore import Keystore, init_keystore
from processing.db import open_database
from processing.schema.loads import loads
from purse.batch import parse_batch
from purse.home import Home
from purse.hotlist import Hotlist
from purse.records import TransactionRecord
from purse.rolekeys import Role, open_role_keys, role_key_path
from purse.station import PosStation
from purse.terminal import CreditTerminal, TransactionInterrupted
from purse.terminal_log import TerminalLog
from purse.transport.virtual import VirtualTransport, image_state

PASSPHRASE = "correct horse battery"
CARD = "6277000000000011"
OTHER = "6277000000000029"
PIN = "1234"
DEMO = REPO / "purse/loyalty/demo-program.toml"
SMALL_PRIZE = """
[program]
id = 5
name = "Lunch card"
[earn]
per_visit = 1
[prize]
threshold = 3
text = "Free lunch"
[redeem]
point_value = "1.00"
"""


@pytest.fixture(scope="module")
def pos_cli_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home made once: keystore, POS key file of terminals 1 and 2, credit key file, two cards."""
    home = Home.open(tmp_path_factory.mktemp("pos-cli") / "home")
    store = init_keystore(home, PASSPHRASE)
    for role, terminal, merchant in (("pos", 1, 10), ("pos", 2, 20), ("credit", None, None)):
        path = role_key_path(home, role, terminal)
        path.parent.mkdir(exist_ok=True)
        write_role_keys(path, store.role_keys(role, terminal, merchant), PASSPHRASE)
    report = issue_to_images(open_database(home.db_url()), issuer_sam(store), card_profile(home, store),
                             [CardRequest(i, pin=PIN) for i in range(2)], "pos-cli", home.cards_dir)
    assert [c.number for c in report.issued] == [CARD, OTHER]  # the first two numbers of IIN 627700
    return home.path


@dataclass
class Run:
    code: int
    out: str
    err: str


class PosHome:
    def __init__(self, path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.path = path
        self.capsys = capsys

    def run(self, *args: str) -> Run:
        self.capsys.readouterr()
        try:
            cli.main(list(args))
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.code == 0, result.err
        return result.out

    def json(self, *args: str) -> dict:  # type: ignore[type-arg]
        return json.loads(self.ok("--json", *args))  # type: ignore[no-any-return]

    def fails(self, *args: str, message: str) -> str:
        result = self.run(*args)
        assert result.code != 0
        assert message in result.err
        assert result.err.count("\n") == 1 and "Traceback" not in result.err, result.err
        return result.err

    def image(self, number: str = CARD) -> bytes:
        return (self.path / "cards" / f"{number}.card").read_bytes()

    def card(self, number: str = CARD) -> dict:  # type: ignore[type-arg]
        return self.json("pos", "read", number, "--terminal", "1")

    def store(self) -> Keystore:
        from personalization.keyfiles import load_issuer

        return load_issuer(Home.open(self.path), PASSPHRASE)


@pytest.fixture
def pos_home(pos_cli_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> Iterator[PosHome]:
    path = tmp_path / "home"
    shutil.copytree(pos_cli_template, path)
    monkeypatch.setenv("SMARTPURSE_HOME", str(path))
    monkeypatch.setenv("SMARTPURSE_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("SMARTPURSE_DB", raising=False)
    monkeypatch.delenv("SMARTPURSE_PIN", raising=False)
    monkeypatch.chdir(tmp_path)
    yield PosHome(path, capsys)


@pytest.fixture
def pos_demo(pos_home: PosHome, tmp_path: Path) -> PosHome:
    """The demo program signed and installed on terminal 1, and 500.00 on the card."""
    shutil.copy(DEMO, tmp_path / "demo.toml")
    pos_home.ok("program", "sign", "demo.toml")
    pos_home.ok("pos", "program", "demo.signed", "--terminal", "1")
    pos_home.ok("load", CARD, "500.00")
    return pos_home


# -- happy paths -------------------------------------------------------------------------------

def test_sign_show_install(pos_home: PosHome, tmp_path: Path) -> None:
    shutil.copy(DEMO, tmp_path / "demo.toml")
    assert "signed program 17 'Coffee Club' v1 -> demo.signed" in pos_home.ok("program", "sign", "demo.toml")
    shown = pos_home.ok("program", "show", "demo.signed")
    assert "signed by the issuer (verified)" in shown and "tier silver: from 10000.00 spent, 3.00% off" in shown
    assert pos_home.json("program", "show", "demo.signed", "--terminal", "1")["redeem"]["point_value"] == "1.00"
    assert "NOT signed" in pos_home.ok("program", "show", "demo.toml")
    assert "now runs program 17" in pos_home.ok("pos", "program", "demo.signed", "--terminal", "1")
    pos_home.fails("pos", "program", "demo.toml", "--terminal", "1",
                   message="demo.toml is not a signed program: sign it first")


def test_load_sell_redeem_cancel_read_batch(pos_demo: PosHome, tmp_path: Path) -> None:
    h = pos_demo
    loaded = h.json("load", CARD, "100.00")
    assert (loaded["kind"], loaded["amount"], loaded["balance"]) == ("load", 10_000, 60_000)
    engine = open_database(f"sqlite:///{h.path / 'smartpurse.db'}")
    with engine.connect() as conn:
        rows = conn.execute(select(loads.c.amount, loads.c.counter, loads.c.record)).all()
    assert [(r.amount, r.counter) for r in rows] == [(50_000, 1), (10_000, 2)]
    assert TransactionRecord.from_bytes(rows[1].record).certificate.hex() == loaded["certificate"]

    receipt = h.ok("pos", "sell", CARD, "123.45", "--terminal", "1")
    assert "price              123.45" in receipt and "debited            123.45" in receipt
    assert "balance            476.55" in receipt and "points                  2" in receipt

    paid = h.json("pos", "sell", CARD, "30.00", "--terminal", "1")  # 1 visit: 3 points
    assert paid["points_after"] == 3
    h.fails("pos", "sell", CARD, "20.00", "--terminal", "1", "--redeem-points", "3", "--pin", PIN,
            message="redeem at least 10 points")

    card = h.card()
    assert (card["balance"], card["points"]["points"], card["points"]["tier"]) == (44_655, 3, "base")
    cancelled = h.json("pos", "cancel", CARD, "--terminal", "1")
    assert (cancelled["kind"], cancelled["amount"], cancelled["points_after"]) == ("cancel", 3_000, 2)
    assert (h.card()["balance"], h.card()["points"]["points"]) == (47_655, 2)
    h.fails("pos", "cancel", CARD, "--terminal", "1", message="nothing to cancel")

    out = h.ok("pos", "batch", "--terminal", "1", "--out", "b1.spb")
    assert "batch 1 of terminal 1: 3 records" in out
    batch = parse_batch((tmp_path / "b1.spb").read_bytes())
    assert batch.header["terminal_id"] == 1 and batch.header["merchant_id"] == 10 and len(batch.entries) == 3
    assert h.json("pos", "batch", "--terminal", "1", "--out", "b2.spb")["records"] == 0


def _lunch_card_with_two_visits(h: PosHome, tmp_path: Path) -> None:
    """The small-prize program on terminal 1; 50.00 on the card; two 5.00 lunches bought."""
    (tmp_path / "lunch.toml").write_text(SMALL_PRIZE)
    h.ok("program", "sign", "lunch.toml")
    h.ok("pos", "program", "lunch.signed", "--terminal", "1")
    h.ok("load", CARD, "50.00")
    h.ok("pos", "sell", CARD, "5.00", "--terminal", "1")
    h.ok("pos", "sell", CARD, "5.00", "--terminal", "1")


def test_redeem_and_prize_receipt(pos_home: PosHome, tmp_path: Path) -> None:
    h = pos_home
    _lunch_card_with_two_visits(h, tmp_path)
    won = h.ok("pos", "sell", CARD, "5.00", "--terminal", "1")
    assert "*** PRIZE: Free lunch ***" in won and "points                  0" in won
    for _ in range(2):
        h.ok("pos", "sell", CARD, "5.00", "--terminal", "1")
    redeemed = h.json("pos", "sell", CARD, "5.00", "--terminal", "1", "--redeem-points", "2", "--pin", PIN)
    assert (redeemed["points_value"], redeemed["amount"], redeemed["points_after"]) == (200, 300, 1)


def test_redeem_asks_for_the_pin(pos_home: PosHome, tmp_path: Path) -> None:
    h = pos_home
    _lunch_card_with_two_visits(h, tmp_path)
    args = ["pos", "sell", CARD, "3.00", "--terminal", "1", "--redeem-points", "1"]
    wrong = CliRunner().invoke(cli.root, args, input="9999\n")
    assert "wrong PIN: 2 tries left" in str(wrong.exception)
    right = CliRunner().invoke(cli.root, args, input=f"{PIN}\n")
    assert right.exit_code == 0, right.output
    assert "Card holder PIN" in right.output and "-1.00  (1 point)" in right.output


# -- bad input: one line, non-zero, the card untouched -----------------------------------------

@pytest.mark.parametrize(("amount", "message"), [
    ("12.345", "more than 2 decimal places"),
    ("-1", "not an amount: '-1'"),
    ("abc", "not an amount: 'abc'"),
    ("0", "must be positive"),
    ("99999999999999", "not an amount"),
])
def test_bad_amounts(pos_demo: PosHome, amount: str, message: str) -> None:
    before = pos_demo.image()
    pos_demo.fails("pos", "sell", CARD, amount, "--terminal", "1", message=message)
    pos_demo.fails("load", CARD, amount, message=message)
    assert pos_demo.image() == before


def test_insufficient_funds(pos_demo: PosHome) -> None:
    before = pos_demo.image()
    pos_demo.fails("pos", "sell", CARD, "500.01", "--terminal", "1", message="insufficient funds")
    assert pos_demo.image() == before
    pos_demo.ok("pos", "sell", CARD, "500.00", "--terminal", "1")


@pytest.mark.parametrize(("args", "message"), [
    (("pos", "sell", "6277000000000094", "1.00", "--terminal", "1"), "unknown card 6277000000000094"),
    (("pos", "sell", "12345", "1.00", "--terminal", "1"), "a card number has 16 digits, not '12345'"),
    (("pos", "sell", "6277000000000099", "1.00", "--terminal", "1"), "its check digit is wrong"),
    (("pos", "sell", CARD, "1.00", "--terminal", "3"), "no pos key file"),
    (("load", "6277000000000094", "1.00"), "is not in this database's registry"),
    (("program", "show", "missing.signed"), "cannot read missing.signed"),
])
def test_unknown_things(pos_demo: PosHome, args: tuple[str, ...], message: str) -> None:
    before = pos_demo.image()
    pos_demo.fails(*args, message=message)
    assert pos_demo.image() == before


def test_wrong_passphrase(pos_demo: PosHome, monkeypatch: pytest.MonkeyPatch) -> None:
    before = pos_demo.image()
    monkeypatch.setenv("SMARTPURSE_PASSPHRASE", "wrong")
    result = pos_demo.run("pos", "sell", CARD, "1.00", "--terminal", "1")
    assert result.code != 0 and result.err.count("\n") == 1 and "Traceback" not in result.err
    assert pos_demo.image() == before


def test_hotlisted_card_is_blocked_and_not_debited(pos_demo: PosHome, tmp_path: Path) -> None:
    h = pos_demo
    store = h.store()
    (tmp_path / "hot.signed").write_bytes(Hotlist(store.issuer_id, 1, 2, {CARD: 1}).sign(store.signing_key))
    assert "hotlist 2 installed (1 cards)" in h.ok("pos", "hotlist", "hot.signed", "--terminal", "1")
    h.fails("pos", "sell", CARD, "10.00", "--terminal", "1", message=f"card {CARD} is hotlisted")
    card = h.card()
    assert (card["state"], card["balance"], card["log"][0]["type"]) == ("blocked", 50_000, "block")
    blocked = h.image()
    h.fails("pos", "sell", CARD, "10.00", "--terminal", "1", message="the card is blocked")
    h.fails("pos", "sell", CARD, "10.00", "--terminal", "2", message="the card is blocked")
    h.fails("load", CARD, "10.00", message="the card is blocked")
    assert h.image() == blocked
    h.ok("load", OTHER, "10.00")
    h.ok("pos", "sell", OTHER, "1.00", "--terminal", "1")  # other cards still sell


def test_hotlist_must_be_the_issuers_and_not_older(pos_home: PosHome, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    store = pos_home.store()
    (tmp_path / "forged.signed").write_bytes(Hotlist(1, 1, 9, {OTHER: 1}).sign(Ed25519PrivateKey.generate()))
    pos_home.fails("pos", "hotlist", "forged.signed", "--terminal", "1", message="not the issuer's")
    (tmp_path / "h5.signed").write_bytes(Hotlist(1, 1, 5, {}).sign(store.signing_key))
    (tmp_path / "h4.signed").write_bytes(Hotlist(1, 1, 4, {OTHER: 1}).sign(store.signing_key))
    pos_home.ok("pos", "hotlist", "h5.signed", "--terminal", "1")
    pos_home.fails("pos", "hotlist", "h4.signed", "--terminal", "1", message="older than the installed 5")


def test_a_tampered_program_is_refused_at_install_and_at_sale(pos_demo: PosHome, tmp_path: Path) -> None:
    h = pos_demo
    signed = json.loads((tmp_path / "demo.signed").read_text())
    payload = base64.b64decode(signed["payload"]).replace(b"threshold = 100", b"threshold = 1  ")
    signed["payload"] = base64.b64encode(payload).decode()
    (tmp_path / "evil.signed").write_text(json.dumps(signed))
    h.fails("pos", "program", "evil.signed", "--terminal", "1", message="altered or forged")
    installed = h.path / "terminals" / "1.program.signed"
    installed.write_text(json.dumps(signed))  # edited in place behind the terminal's back
    before = h.image()
    h.fails("pos", "sell", CARD, "1.00", "--terminal", "1", message="altered or forged")
    assert h.image() == before


def test_coalition_terminals_touch_only_their_program(pos_demo: PosHome, tmp_path: Path) -> None:
    h = pos_demo
    (tmp_path / "lunch.toml").write_text(SMALL_PRIZE)
    h.ok("program", "sign", "lunch.toml")
    h.ok("pos", "program", "lunch.signed", "--terminal", "2")
    h.ok("pos", "sell", CARD, "200.00", "--terminal", "1")  # Coffee Club: 1 + 2 = 3
    h.ok("pos", "sell", CARD, "5.00", "--terminal", "2")  # Lunch card: 1
    one = h.json("pos", "read", CARD, "--terminal", "1")["points"]
    two = h.json("pos", "read", CARD, "--terminal", "2")["points"]
    assert (one["program_name"], one["points"]) == ("Coffee Club", 3)
    assert (two["program_name"], two["points"]) == ("Lunch card", 1)


# -- a terminal-only install ----------------------------------------------------------------------
TERMINAL_ONLY = """
import importlib.abc, sys
BACK_OFFICE = {"sqlalchemy", "alembic", "numpy", "openpyxl", "rich", "segno", "barcode", "PIL", "psycopg"}
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BACK_OFFICE:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NotInstalled())
import cli
cli.main(sys.argv[1:])
"""


def test_a_terminal_only_install_sells_and_names_the_part_a_back_office_command_needs(pos_demo: PosHome) -> None:
    """``pip install smartpurse`` without extras: the POS works; ``cards list`` says what to install."""
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", TERMINAL_ONLY, *args], capture_output=True, text=True,
                              cwd=REPO)

    sold = run("pos", "sell", CARD, "1.00", "--terminal", "1")
    assert sold.returncode == 0, sold.stderr
    assert "PURCHASE" in sold.stdout
    for args in (("cards", "list"), ("load", CARD, "1.00"), ("process", "x.spb")):
        refused = run(*args)
        assert refused.returncode == 3, refused.stderr
        assert refused.stderr.count("\n") == 1 and "pip install 'smartpurse[backoffice]'" in refused.stderr


# -- a cashier's retry after a pulled card ---------------------------------------------------------
def _pulled_after_commit(h: PosHome, command: Callable[[VirtualTransport], object]) -> None:
    """Run ``command`` on the card's image, pulling the card at each write in turn until one pull
    comes after the card committed: the card has done it, the terminal never saw the answer."""
    image = h.path / "cards" / f"{CARD}.card"
    before = image_state(image.read_bytes())
    for write in range(1, 30):
        saved = image.read_bytes()
        card = VirtualTransport.open(image)
        card.tear_at(write)
        with pytest.raises(TransactionInterrupted):
            command(card)
        card.storage.close()  # type: ignore[attr-defined]
        after = image_state(VirtualTransport.open(image).image_bytes())
        if after.balance != before.balance or after.state != before.state:
            return
        image.write_bytes(saved)  # not committed: put the card back as it was and pull later
    raise AssertionError("no pull after the commit")


def _station(h: PosHome) -> PosStation:
    return PosStation.open(Home.open(h.path), 1, PASSPHRASE)


def test_a_retried_sale_after_a_pulled_card_is_charged_once(pos_demo: PosHome, tmp_path: Path) -> None:
    h = pos_demo
    start = h.card()["balance"]
    _pulled_after_commit(h, lambda card: _station(h).terminal(card).debit(1_000))
    out = h.ok("pos", "sell", CARD, "10.00", "--terminal", "1")  # the cashier's retry
    assert "completed before the card was pulled: done once, not again" in out and "debited" in out
    assert h.card()["balance"] == start - 1_000
    again = h.json("pos", "sell", CARD, "10.00", "--terminal", "1", "--again")  # a second sale, on purpose
    assert not again["completed_before"] and again["balance"] == start - 2_000
    assert h.json("pos", "batch", "--terminal", "1", "--out", str(tmp_path / "b.spb"))["records"] == 2


def test_a_retried_load_after_a_pulled_card_is_loaded_and_recorded_once(pos_demo: PosHome) -> None:
    h = pos_demo
    start = h.card()["balance"]
    keys = open_role_keys(Home.open(h.path), Role.CREDIT, PASSPHRASE)

    def desk(card: VirtualTransport) -> object:
        log = TerminalLog(h.path / "terminals" / "credit.db", terminal_id=0, merchant_id=0, log_key=None)
        return CreditTerminal(card, keys.sam(), log, terminal_id=0).load(5_000)

    _pulled_after_commit(h, desk)
    retried = h.json("load", CARD, "50.00")
    assert retried["completed_before"] and retried["amount"] == 5_000
    assert h.card()["balance"] == start + 5_000
    engine = open_database(f"sqlite:///{h.path / 'smartpurse.db'}")
    with engine.connect() as conn:
        amounts = conn.execute(select(loads.c.amount).order_by(loads.c.counter)).scalars().all()
    assert amounts == [50_000, 5_000]  # the demo's first load, then this one: recorded once


def test_a_retried_cancel_after_a_pulled_card_says_it_was_done(pos_demo: PosHome) -> None:
    h = pos_demo
    h.ok("pos", "sell", CARD, "30.00", "--terminal", "1")
    start = h.card()["balance"]
    _pulled_after_commit(h, lambda card: _station(h).terminal(card).cancel_last())
    out = h.ok("pos", "cancel", CARD, "--terminal", "1")
    assert "completed before the card was pulled" in out and "CANCEL" in out
    assert h.card()["balance"] == start + 3_000


def test_a_batch_is_never_closed_before_its_file_is_written_and_can_be_written_again(pos_demo: PosHome,
                                                                                     tmp_path: Path) -> None:
    h = pos_demo
    h.ok("pos", "sell", CARD, "12.00", "--terminal", "1")
    (tmp_path / "not-a-folder").write_text("x")
    h.fails("pos", "batch", "--terminal", "1", "--out", str(tmp_path / "not-a-folder" / "b.spb"),
            message="cannot write")
    first = h.json("pos", "batch", "--terminal", "1", "--out", str(tmp_path / "new" / "dir" / "b1.spb"))
    assert (first["batch_seq"], first["records"]) == (1, 1)  # the failed export closed nothing
    again = h.json("pos", "batch", "--terminal", "1", "--out", str(tmp_path / "b1-again.spb"), "--batch", "1")
    assert again["records"] == 1
    assert (tmp_path / "b1-again.spb").read_bytes() == (tmp_path / "new" / "dir" / "b1.spb").read_bytes()
    h.fails("pos", "batch", "--terminal", "1", "--out", str(tmp_path / "b9.spb"), "--batch", "9",
            message="has no batch 9")


def test_a_desk_refuses_a_card_its_database_does_not_know_before_touching_it(pos_demo: PosHome,
                                                                             tmp_path: Path) -> None:
    """``--db`` naming a new, empty database: no money goes onto a card no ledger would hold."""
    h = pos_demo
    before = h.image()
    h.fails("--db", f"sqlite:///{tmp_path / 'new.db'}", "load", CARD, "50.00",
            message=f"card {CARD} is not in this database's registry")
    assert h.image() == before
    h.ok("cards", "block", CARD, "--reason", "stolen")
    h.fails("load", CARD, "50.00", message="is blocked in the registry")
    assert h.image() == before


@pytest.mark.parametrize(("damage", "message"), [
    ("UPDATE meta SET value = 1 WHERE key = 'next_seq'", "its next sequence number 1 was used already"),
    ("DELETE FROM meta WHERE key = 'next_seq'", "its next sequence number 1 was used already"),
    ("UPDATE chain_head SET idx = idx + 5", "its chain head does not match its last record"),
    ("UPDATE chain_head SET mac = zeroblob(8)", "its chain head does not match its last record"),
    ("UPDATE meta SET value = 99 WHERE key = 'terminal_id'", "belongs to terminal id 99, not 1"),
])
def test_a_damaged_terminal_log_refuses_to_sell_before_touching_the_card(pos_demo: PosHome, damage: str,
                                                                          message: str) -> None:
    h = pos_demo
    h.ok("pos", "sell", CARD, "1.00", "--terminal", "1")
    with sqlite3.connect(h.path / "terminals" / "1.db") as db:
        db.execute(damage)
    before = h.image()
    h.fails("pos", "sell", CARD, "2.00", "--terminal", "1", message=message)
    assert h.image() == before


def test_a_key_rotation_strands_no_open_batch(pos_demo: PosHome, tmp_path: Path) -> None:
    """Rotate, re-export the POS key file as docs/operations.md says, sell on: every batch is posted.

    The open batch goes on under the version it was chained with (batch 1: v1, with a sale made
    after the rotation); the next batch begins under the new version (batch 2: v2)."""
    h = pos_demo
    h.ok("pos", "sell", CARD, "10.00", "--terminal", "1")
    assert h.json("keys", "rotate")["current_version"] == 2
    h.ok("keys", "export", "--role", "pos", "--terminal", "1", "--merchant", "10")
    h.ok("keys", "export", "--role", "processing")
    h.ok("pos", "sell", CARD, "20.00", "--terminal", "1")
    h.ok("pos", "batch", "--terminal", "1", "--out", "b1.spb")
    h.ok("pos", "sell", CARD, "30.00", "--terminal", "1")
    h.ok("pos", "batch", "--terminal", "1", "--out", "b2.spb")
    assert [parse_batch((tmp_path / f"b{n}.spb").read_bytes()).header["log_key_version"] for n in (1, 2)] == [1, 2]
    processed = h.json("process", "b1.spb", "b2.spb")
    assert [b["status"] for b in processed["batches"]] == ["accepted", "accepted"], processed
    assert (processed["accepted"], processed["rejected"], processed["anomalies"]) == (3, 0, 0)
    checked = h.json("check")
    assert checked["ok"] and checked["figures"]["quarantined_batches"] == 0, checked


def test_a_terminal_log_that_starts_again_loses_no_sale(pos_demo: PosHome, tmp_path: Path) -> None:
    """The log file emptied (lost, a new device): the next sales number from 1 again under a new log
    identity, and processing posts them, names the restart, and follows the new log's chain."""
    h = pos_demo
    h.ok("keys", "export", "--role", "pos", "--terminal", "1", "--merchant", "10")  # registers terminal 1
    h.ok("keys", "export", "--role", "processing")
    h.ok("pos", "sell", CARD, "10.00", "--terminal", "1")
    h.ok("pos", "batch", "--terminal", "1", "--out", "old-1.spb")
    assert h.json("process", "old-1.spb")["accepted"] == 1
    for part in (h.path / "terminals").glob("1.db*"):
        part.unlink()
    h.ok("pos", "sell", CARD, "20.00", "--terminal", "1")
    h.ok("pos", "batch", "--terminal", "1", "--out", "new-1.spb")
    old, new = (parse_batch((tmp_path / f"{name}.spb").read_bytes()).header for name in ("old-1", "new-1"))
    assert (new["batch_seq"], new["first_index"]) == (1, 1) and new["log_id"] != old["log_id"]
    processed = h.json("process", "new-1.spb")
    [batch] = processed["batches"]
    assert (batch["status"], batch["accepted"], batch["duplicates"]) == ("accepted", 1, 0), batch
    assert [a["kind"] for a in batch["anomalies"]] == ["terminal_log_started"]
    h.ok("pos", "sell", CARD, "30.00", "--terminal", "1")
    h.ok("pos", "batch", "--terminal", "1", "--out", "new-2.spb")  # batch 2 of the new log continues its chain
    assert h.json("process", "new-2.spb")["batches"][0]["accepted"] == 1
    checked = h.json("check")
    assert checked["ok"] and checked["figures"]["records_net"] == 50_000 - 6_000, checked
