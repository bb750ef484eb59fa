"""How the command line behaves for every command: exit codes, --json anywhere, logs, homes, help.

Run through ``cli.main`` (the real error boundary) or as a subprocess, as a user or a script
sees it; docs/cli.md is the contract these tests hold the command to.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO
from support.cards import make_issuer
from support.cli import run

from purse.errors import ExitCode
from purse.transport import traced


def test_every_exit_code_is_in_docs_cli_md() -> None:
    table = (REPO / "docs/cli.md").read_text()
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert documented == {int(code) for code in ExitCode}


def test_a_bare_smartpurse_prints_help_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 0 and err == "" and out.startswith("Usage: smartpurse") and "Exit codes:" in out


def test_json_after_the_command_and_json_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTPURSE_PASSPHRASE", "pass phrase")
    home = str(tmp_path / "h")
    code, out, _ = run(capsys, "--home", home, "keys", "init", "--json")
    assert code == 0 and json.loads(out)["current_version"] == 1
    code, out, _ = run(capsys, "--home", home, "check", "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out, err = run(capsys, "--home", home, "cards", "show", "6277000000000011", "--json")
    assert code == ExitCode.BAD_INPUT and out == ""
    assert json.loads(err) == {"error": json.loads(err)["error"], "kind": "bad_input", "exit_code": 6}
    code, _, err = run(capsys, "--home", home, "--json", "cards", "list", "--no-such-option")
    assert code == ExitCode.USAGE and json.loads(err)["kind"] == "usage"


def test_a_folder_that_is_not_a_home_is_refused_and_left_alone(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    for args in (("cards", "list"), ("check",), ("pos", "batch", "--terminal", "1", "--out", "b.spb")):
        code, _, err = run(capsys, "--home", str(tmp_path / "typo"), *args)
        assert code == ExitCode.BAD_INPUT, (args, err)
        assert f"{tmp_path / 'typo'} does not exist" in err and "smartpurse keys init" in err
        assert err.count("\n") == 1
    assert not (tmp_path / "typo").exists()
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "--home", str(tmp_path / "empty"), "cards", "list")
    assert code == ExitCode.BAD_INPUT and "is not a smartpurse home" in err
    assert list((tmp_path / "empty").iterdir()) == []


def test_apdu_traces_go_to_the_log_file_with_pins_and_keys_blanked(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "card.img"
    make_issuer().file_card(image, balance=100)
    log_file = tmp_path / "trace.log"
    select = "00A4040008F053505552534501"
    code, out, _ = run(capsys, "-vvv", "--log-file", str(log_file), "apdu", "--image", str(image), select,
                       "8020000008" + "31323334FFFFFFFF")
    assert code == ExitCode.CARD_REFUSED and "> 00a4040008f053505552534501" in out  # the bare PIN is refused
    run(capsys, "cards", "list", "--help")  # the next command closes the log file
    trace = log_file.read_text()
    assert "virtual > 00a4040008f053505552534501" in trace and "virtual < " in trace
    assert "virtual > 8020000008 <8 bytes of PIN or key data not logged>" in trace and "31323334" not in trace
    assert traced(bytes.fromhex("00A4040008F053505552534501")) == "00a4040008f053505552534501"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cards_serve_says_when_pcscd_is_not_listening(tmp_path: Path) -> None:
    image = tmp_path / "card.img"
    make_issuer().file_card(image, balance=100)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "cards", "serve", str(image), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert f"pcscd's vpcd driver is not listening at 127.0.0.1:{port}" in line, line
        with socket.create_server(("127.0.0.1", port)) as server:  # now "pcscd" comes up
            server.settimeout(10)
            connection, _ = server.accept()
            connection.close()
            deadline = time.monotonic() + 10
            line = proc.stderr.readline()
            assert time.monotonic() < deadline and "answered" in line, line
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # not part of what is tested here; never leave it running
            proc.kill()
            proc.communicate()
            raise


def _all_commands() -> list[tuple[str, object]]:
    import click

    import cli

    found: list[tuple[str, object]] = []

    def walk(path: str, command: click.Command) -> None:
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=path)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(f"{path} {name}", sub)
        else:
            found.append((path, command))

    walk("smartpurse", cli.root)
    return found


def test_every_option_and_command_has_help() -> None:
    import click

    missing = []
    for path, command in _all_commands():
        assert isinstance(command, click.Command)
        if not command.help:
            missing.append(path)
        missing += [f"{path} {p.opts[-1]}" for p in command.params
                    if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert missing == []


def test_a_long_listing_is_plain_columns_with_every_row() -> None:
    from purse._cli.util import PLAIN_TABLE_ROWS, table

    rows = [(f"6277 0000 {i:04d} 0011", "issued", f"{i * 7}") for i in range(PLAIN_TABLE_ROWS * 5)]
    text = table(("number", "state", "amount"), rows, right=("amount",))
    lines = text.splitlines()
    assert lines[0].split() == ["number", "state", "amount"] and set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == len(rows) + 2 and "│" not in text
    assert lines[-1].endswith(f"issued  {(len(rows) - 1) * 7:>6}")
    short = table(("number",), rows[:3])
    assert "│" in short or "┃" in short  # a few rows: the rich table


def test_every_document_the_code_cites_is_in_the_repository() -> None:
    """Docstrings and docs cite docs/*.md (and sections of docs/design.md): each must exist."""
    cited: set[tuple[str, str]] = set()
    for path in [*REPO.glob("*.py"), *REPO.glob("*/**/*.py"), *REPO.glob("docs/*.md"), REPO / "README.md"]:
        if ".venv" in path.parts:
            continue
        text = path.read_text()
        outside = re.findall(r"(?<![\w/])(?:DESIGN|STYLE)\.md", text)  # ../shared's, not in the repository
        assert not outside or path == Path(__file__), (path, outside)
        for doc, section in re.findall(r"(docs/[\w-]+\.md)(?:, \"([^\"]+)\")?", text):
            cited.add((doc, section))
    for doc, section in sorted(cited):
        target = REPO / doc
        assert target.is_file(), doc
        if doc == "docs/design.md" and section:
            assert re.search(rf"^#+ {re.escape(section)}$|\*\*{re.escape(section)}\.\*\*", target.read_text(),
                             re.M), section


def _keys(data: object, found: dict[str, list[object]]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            found.setdefault(key, []).append(value)
            _keys(value, found)
    elif isinstance(data, list):
        for item in data:
            _keys(item, found)


def test_json_speaks_one_vocabulary(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Card numbers are ``card_number``, files ``path``, programs ``program_id``; times are ISO 8601 with an offset."""
    from purse._cli.vocabulary import DAY_KEYS, RENAMED, TIME_KEYS

    monkeypatch.setenv("SMARTPURSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SMARTPURSE_PASSPHRASE", "pass phrase")
    monkeypatch.chdir(tmp_path)
    card = "6277000000000011"
    commands = [("keys", "init"), ("keys", "show"), ("keys", "export", "--role", "pos", "--terminal", "1",
                                                     "--merchant", "1"),
                ("keys", "export", "--role", "credit"), ("keys", "export", "--role", "processing"),
                ("cards", "issue", "--count", "2", "--show-pins"), ("cards", "list"), ("cards", "show", card),
                ("load", card, "50.00"), ("program", "example"), ("program", "sign", "demo-program.toml"),
                ("program", "show", "demo-program.signed"),
                ("pos", "program", "demo-program.signed", "--terminal", "1"),
                ("pos", "sell", card, "1.00", "--terminal", "1"), ("pos", "read", card, "--terminal", "1"),
                ("pos", "batch", "--terminal", "1", "--out", "b.spb"), ("process", "b.spb"), ("check",),
                ("report", "statement", "--card", card, "--format", "json", "--out", "s.json"),
                ("cards", "face", card, "--out", "face.svg")]
    found: dict[str, list[object]] = {}
    for command in commands:
        code, out, err = run(capsys, *command, "--json")
        assert code == 0, (command, err)
        _keys(json.loads(out), found)
    assert not set(RENAMED) & set(found), set(RENAMED) & set(found)
    assert "id" not in found and {"card_number", "path", "program_id"} <= set(found)
    iso = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")
    for key in TIME_KEYS & set(found):
        for value in found[key]:
            assert value is None or isinstance(value, dict) or (isinstance(value, str) and iso.fullmatch(value)), \
                (key, value)
    day = re.compile(r"\d{4}-\d\d-\d\d")
    for key in DAY_KEYS & set(found):
        assert all(v is None or isinstance(v, dict) or day.fullmatch(str(v)) for v in found[key]), (key, found[key])
    assert any(isinstance(v, str) for v in found["time"]) and any(isinstance(v, str) for v in found["issued_at"])


def test_man_writes_a_page_per_command_that_nroff_renders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "man", "--out", str(tmp_path / "man"), "--json")
    assert code == 0, err
    pages = json.loads(out)["pages"]
    commands = {"smartpurse-" + path.removeprefix("smartpurse ").replace(" ", "-") + ".1"
                for path, _ in _all_commands()}
    assert commands <= set(pages) and "smartpurse.1" in pages
    done = subprocess.run(["nroff", "-man", "-ww", str(tmp_path / "man" / "smartpurse-pos-sell.1")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    text = re.sub(r".\x08", "", done.stdout)  # nroff's overstrike bold
    assert "smartpurse pos sell [OPTIONS] NUMBER AMOUNT" in text and "--again" in text
