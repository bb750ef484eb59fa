"""Bad input a user gives the command line: one clear line, a documented exit code, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO
from support.cli import fails


def test_no_passphrase_and_no_terminal_is_one_line_saying_how_to_give_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SMARTPURSE_PASSPHRASE"}
    done = subprocess.run([sys.executable, str(REPO / "cli.py"), "--home", str(tmp_path / "h"), "keys", "init"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 6
    assert done.stderr == "error: no passphrase: set SMARTPURSE_PASSPHRASE (or run the command in a terminal to " \
                          "be asked)\n"
    assert not (tmp_path / "h" / "keystore.json").exists()


@pytest.mark.parametrize(("db", "message"), [
    ("sqlite:///{tmp}/missing/folder/x.db", "there is no folder"),
    ("sqlite:///{tmp}/text.txt", "file is not a database"),
    ("sqlite:///{tmp}/random.bin", "file is not a database"),
    ("nonsense://x", "bad database URL"),
])
def test_a_database_that_is_not_one_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], db: str,
                                                 message: str) -> None:
    (tmp_path / "text.txt").write_text("hello\n")
    (tmp_path / "random.bin").write_bytes(os.urandom(3000))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    fails(capsys, message, "--home", str(tmp_path / "h"), "--db", db.format(tmp=tmp_path), "check")
    assert {name: (tmp_path / name).read_bytes() for name in before} == before  # nothing it holds was touched
