"""Card numbers: Luhn-valid, ISO 7812 shaped, never issued twice, even by concurrent processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from stdnum import luhn

from personalization.numbering import allocate, card_number, check_iin
from processing.db import open_database
from processing.schema.registry import card_numbers, cards
from purse.cardnumber import format as format_number
from purse.cardnumber import validate as validate_number
from purse.errors import UserError


@given(st.integers(min_value=1, max_value=999_999_999))
def test_every_number_passes_luhn_and_keeps_the_iin(sequence: int) -> None:
    number = card_number("627700", sequence)
    assert len(number) == 16 and number.startswith("627700") and luhn.is_valid(number)
    assert int(number[6:15]) == sequence
    assert validate_number(format_number(number)) == number


def test_eight_digit_iin_leaves_seven_digits() -> None:
    assert card_number("62770012", 5) == "627700120000005" + luhn.calc_check_digit("627700120000005")
    with pytest.raises(UserError, match="does not fit"):
        card_number("62770012", 10**7)


@pytest.mark.parametrize("bad", ["12345", "012345", "1234567", "62a700", ""])
def test_bad_iin(bad: str) -> None:
    with pytest.raises(UserError):
        check_iin(bad)


@pytest.mark.parametrize("bad", ["6277000000000012", "627700000000001", "6277 0000 0000 001x", "junk"])
def test_bad_numbers_are_one_line_errors(bad: str) -> None:
    with pytest.raises(UserError) as e:
        validate_number(bad)
    assert "\n" not in str(e.value)


def test_allocation_continues_after_reopening(personalization_db: str) -> None:
    engine = open_database(personalization_db)
    with engine.begin() as conn:
        first = allocate(conn, "627700", 3)
    engine.dispose()
    engine = open_database(personalization_db)
    with engine.begin() as conn:
        second = allocate(conn, "627700", 2)
    assert [int(n[6:15]) for n in first + second] == [1, 2, 3, 4, 5]


def test_a_rolled_back_allocation_gives_its_numbers_back(personalization_db: str) -> None:
    """Numbers and their reservation commit together, so an aborted one loses nothing."""
    engine = open_database(personalization_db)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        allocate(conn, "627700", 5)
        raise RuntimeError("crash before commit")
    with engine.begin() as conn:
        assert int(allocate(conn, "627700", 1)[0][6:15]) == 1


@pytest.mark.slow
def test_two_concurrent_issue_processes_never_share_a_number(personalization_home: Path,
                                                            personalization_db: str) -> None:
    command = [sys.executable, "-c", "import cli; cli.main()", "--db", personalization_db, "--json",
               "cards", "issue", "--count", "1500", "--chunk", "7", "--show-pins"]  # long enough to overlap under load
    env = dict(os.environ)
    procs = [subprocess.Popen(command + ["--batch", f"p{i}", "--out", str(personalization_home / f"out{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for i in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()
    numbers = [c["card_number"] for out, _ in outputs for c in json.loads(out)["cards"]]
    assert len(numbers) == 3000 and len(set(numbers)) == 3000
    assert all(luhn.is_valid(n) for n in numbers)
    # The two processes really interleaved (else this test proves nothing about locking) ...
    by_process = [sorted(int(c["card_number"][6:15]) for c in json.loads(out)["cards"]) for out, _ in outputs]
    assert any(b[-1] > a[0] and a[-1] > b[0] for a, b in [by_process])
    # ... and together they used exactly the first 3000 sequences: none lost.
    assert sorted(by_process[0] + by_process[1]) == list(range(1, 3001))
    engine = open_database(personalization_db)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(cards)).scalar() == 3000
        assert conn.execute(select(func.count()).select_from(card_numbers)
                            .where(card_numbers.c.state != "issued")).scalar() == 0
