"""The terminal-vendor example of README.md runs on a virtual card and through pcscd + vpcd."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO
from support import pcsc as pcsc_env

ROOT = REPO
EXAMPLE = ROOT / "examples" / "terminal.py"


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("example") / "demo"
    done = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "demo", "--out", str(out), "--cards", "3",
                           "--purchases", "20", "--terminals", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out / "home"


def run_example(home: Path, card: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLE), str(home), card], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def balances(output: str) -> tuple[int, int]:
    before = re.search(r"balance (\d+)\.(\d\d), points", output)
    after = re.search(r"\), balance (\d+)\.(\d\d), points", output)
    assert before and after, output
    return int(before[1] + before[2]), int(after[1] + after[2])


def test_readme_shows_the_example_verbatim() -> None:
    assert EXAMPLE.read_text().strip() in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_example_on_a_virtual_card(demo_home: Path) -> None:
    card = sorted((demo_home / "cards").glob("*.card"))[0]
    out = run_example(demo_home, str(card))
    before, after = balances(out)
    assert before - after == int(re.search(r"paid (\d+)\.(\d\d)", out)[0].split()[1].replace(".", ""))
    assert re.search(r"certificate [0-9a-f]{16}", out)


@pytest.mark.slow
def test_example_through_pcscd_and_vpcd(demo_home: Path, pcsc: pcsc_env.PcscEnv) -> None:
    card = sorted((demo_home / "cards").glob("*.card"))[1]
    pcsc.serve(card)
    out = run_example(demo_home, f"pcsc:{pcsc.reader}")
    before, after = balances(out)
    assert before > after
    assert card.stem in out  # the card the reader holds is the image served


def test_example_with_the_system_python_says_which_python_to_use(tmp_path: Path) -> None:
    """``-I``: no user site, no PYTHONPATH, the script's folder only: as a system python sees it."""
    done = subprocess.run([sys.executable, "-I", "-S", str(EXAMPLE), str(tmp_path), "card"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("run this with the venv's python (.venv/bin/python) or "
                                        "`pip install smartpurse` first")


@pytest.mark.slow
def test_example_without_a_card_in_the_reader_is_one_line(demo_home: Path, pcsc: pcsc_env.PcscEnv) -> None:
    from purse.transport.vpcd import DEFAULT_PORT, reader_name

    empty = reader_name(DEFAULT_PORT + 1)  # vpcd's second slot: a reader nobody serves a card in
    done = subprocess.run([sys.executable, str(EXAMPLE), str(demo_home), f"pcsc:{empty}"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 4, done.stderr  # ExitCode.NO_CARD
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
