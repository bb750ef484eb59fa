"""The back office from the command line, end to end with real cards, terminals and key files."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from openpyxl import load_workbook
from support.backoffice import database
from support.cli import run

from personalization.keyfiles import load_issuer
from purse.home import Home
from purse.hotlist import load_hotlist
from purse.signing import public_bytes

PASSPHRASE = "processing cli passphrase"


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


class Shell:
    """``smartpurse`` in this process (``cli.main``), with the environment a user's shell would have."""

    def __init__(self, home: Path, db: str, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> None:
        for name, value in (("SMARTPURSE_HOME", str(home)), ("SMARTPURSE_DB", db),
                            ("SMARTPURSE_PASSPHRASE", PASSPHRASE)):
            monkeypatch.setenv(name, value)
        self.capsys = capsys

    def run(self, *args: str, ok: bool = True) -> Done:
        code, out, err = run(self.capsys, *args)
        if ok:
            assert code == 0, (args, out, err)
        return Done(code, out, err)

    def json(self, *args: str) -> object:
        return json.loads(self.run("--json", *args).stdout)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_issue_load_sell_process_check_settle_report(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Every role's commands in the order a new issuer runs them, in one process as a user's shell would."""
    with database(kind, tmp_path) as url:
        home = tmp_path / "home"
        sh = Shell(home, url, monkeypatch, capsys)
        sh.run("keys", "init")
        sh.run("keys", "export", "--role", "processing")
        sh.run("keys", "export", "--role", "pos", "--terminal", "7", "--merchant", "42")
        sh.run("keys", "export", "--role", "credit")
        sh.run("cards", "issue", "--count", "2", "--show-pins")
        numbers = sorted(p.stem for p in (home / "cards").glob("*.card"))
        assert len(numbers) == 2
        for n in numbers:
            sh.run("load", n, "100.00")
        sh.run("pos", "sell", numbers[0], "12.50", "--terminal", "7")
        sh.run("pos", "sell", numbers[1], "7.25", "--terminal", "7")
        batch = tmp_path / "t7-1.spb"
        sh.run("pos", "batch", "--terminal", "7", "--out", str(batch))

        summary = sh.json("process", str(batch))
        assert (summary["accepted"], summary["rejected"], summary["anomalies"]) == (2, 0, 0)
        again = sh.run("process", str(batch))
        assert "nothing changed" in again.stdout

        damaged = tmp_path / "damaged.spb"
        data = bytearray(batch.read_bytes())
        data[40 + 21] ^= 0x10  # the first record's amount
        damaged.write_bytes(bytes(data))
        bad = sh.run("process", str(damaged), ok=False)
        assert bad.returncode == 1 and "record 1: chain MAC" in bad.stdout
        assert bad.stderr.strip() == "error: 1 of 1 batches rejected (batch files kept in quarantine)"
        assert stat.S_IMODE(next((home / "quarantine").iterdir()).stat().st_mode) == 0o600
        for secret in (home / "keystore.json", home / "cards" / f"{numbers[0]}.card"):
            refused = sh.run("process", str(secret), ok=False)
            assert refused.returncode == 1 and "not a batch file: not kept" in refused.stdout
        assert len(list((home / "quarantine").iterdir())) == 1

        check = sh.json("check")
        assert check["ok"] and check["figures"]["card_float"] == 20_000 - 1_250 - 725
        assert check["figures"]["quarantined_batches"] == 0  # the damaged copy's records came in with the good one

        statements = sh.json("settle", "--until", "2999-01-01")
        assert [(s["merchant_id"], s["gross"]) for s in statements] == [(42, 1_975)]

        out = tmp_path / "float.xlsx"
        sh.run("report", "float", "--format", "xlsx", "--out", str(out), "--rate", "35")
        ws = load_workbook(out).active
        assert ws.cell(ws.max_row, 1).value == "TOTAL"
        sh.run("report", "statement", "--card", numbers[0], "--format", "csv", "--out", str(tmp_path / "s.csv"))
        assert (tmp_path / "s.csv").read_bytes().startswith(b"\xef\xbb\xbf")

        sh.run("cards", "block", numbers[1], "--reason", "lost")
        hot = tmp_path / "hotlist.signed"
        exported = sh.json("hotlist", "export", "--out", str(hot))
        assert exported["cards"] == 1
        issuer = load_issuer(Home.open(home), PASSPHRASE)
        assert numbers[1] in load_hotlist(hot, public_bytes(issuer.signing_key.public_key()))

        sh.run("pos", "sell", numbers[0], "3.00", "--terminal", "7")  # batch 2 arrives damaged: held, not posted
        second = tmp_path / "t7-2.spb"
        sh.run("pos", "batch", "--terminal", "7", "--out", str(second))
        data = bytearray(second.read_bytes())
        data[40 + 21] ^= 0x01
        second.write_bytes(bytes(data))
        assert sh.run("process", str(second), ok=False).returncode == 1
        held = sh.json("check")["figures"]
        assert (held["quarantined_batches"], held["quarantined_purchases"]) == (1, 300)
        assert "held in quarantine (not posted): 1 batches announcing purchases 3.00 RUB" in sh.run("check").stdout

        bad_date = sh.run("settle", "--until", "yesterday", ok=False)
        assert bad_date.returncode == 2 and bad_date.stderr.strip() == \
            "error: Invalid value for '--until': 'yesterday' does not match the format '%Y-%m-%d'. " \
            "(see 'smartpurse settle --help')"
        assert "Traceback" not in bad_date.stderr
