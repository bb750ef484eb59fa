"""The city-day benchmark runs from a clone in one command, at a size CI affords, and measures a correct import.

No number is asserted (performance is reported in docs/performance.md, never timed in tests); what is
asserted is that each mode imported the whole day and that K importers sharing one inbox stored every
record exactly once (the benchmark itself refuses to report otherwise)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import REPO


@pytest.mark.slow
@pytest.mark.postgres
def test_city_day_runs_small_on_sqlite_and_postgresql_with_two_importers() -> None:
    url = os.environ["SMARTPURSE_TEST_PG"]
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "city_day.py"), "--terminals", "24",
                           "--per-batch", "50", "--cards", "3000", "--touched", "600", "--history", "2000",
                           "--importers", "1,2", "--points", "--db", "sqlite", "--db", url, "--json"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["databases"]) == {"sqlite", "postgresql"}
    for name, db in report["databases"].items():
        for mode in ("import", "bare"):
            assert [r["records"] for r in db["runs"][mode]] == [24 * 50], (name, mode)
            assert all(r["peak_rss_mib"] > 0 for r in db["runs"][mode])
    assert set(report["databases"]["postgresql"]["importers_seconds"]) == {"1", "2"}


@pytest.mark.slow
@pytest.mark.postgres
def test_the_copy_benchmark_runs_small_and_copies_every_record() -> None:
    """``benchmarks/db_copy.py``: a SQLite database filled by real imports, copied into PostgreSQL (check --full
    passing on the copy, or the benchmark stops), against the records alone sent by COPY."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "db_copy.py"), "--cards", "300", "--history",
                           "3000", "--repeat", "1", "--json"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["records"] == 3300  # each card's load and the history's purchases
    assert report["rows"] > report["records"]
