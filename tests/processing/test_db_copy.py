"""``smartpurse database copy``: the demo's SQLite books moved into PostgreSQL, row for row, and usable there."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from support import backoffice
from support.postgres import pg_schema

from processing import ledger, reports
from processing.db import open_database
from processing.db_copy import CopyRefused, copy_database
from processing.schema import load_all_tables
from processing.schema.processing import journal_entries, records

REPO = Path(__file__).resolve().parents[2]


def _smartpurse(home: Path, *args: str, db: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SMARTPURSE_PASSPHRASE=backoffice.PASSPHRASE)
    env.pop("SMARTPURSE_DB", None)
    return subprocess.run([sys.executable, str(REPO / "cli.py"), "--json", "--home", str(home),
                           *(["--db", db] if db else []), *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd=REPO)


def _plain(value: Any) -> Any:
    """A value as both databases give it back: moments in UTC, bytes as bytes."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _tables(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {t.name: [tuple(_plain(v) for v in row) for row in conn.execute(
                    select(*t.columns).order_by(*t.primary_key.columns))]
                for t in load_all_tables().sorted_tables}


def _reports(engine: Engine) -> str:
    with engine.connect() as conn:
        built = [reports.build(conn, kind) for kind in ("settlement", "float", "points", "cards", "terminals",
                                                        "anomalies", "trial-balance", "journal")]
    return json.dumps([(r.rows, r.totals, r.summary) for r in built], default=str, sort_keys=True)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The end-to-end demo's books on SQLite: cards, holders, batches, the clone, a replacement, settlements."""
    out = tmp_path_factory.mktemp("copy") / "demo"
    done = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "--json", "demo", "--out", str(out),
                           "--cards", "12", "--purchases", "160", "--terminals", "3", "--days", "5"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    home = out / "home"
    assert (home / "smartpurse.db").is_file()
    return home


@pytest.mark.slow
@pytest.mark.postgres
def test_the_demo_books_move_to_postgresql_row_for_row_and_go_on_there(demo_home: Path) -> None:
    """Every row of every table arrives equal; the reports read the same; check passes on the copy; the next
    journal entry numbers on after the copied ones; a second copy into the now full database is refused and
    changes nothing; the SQLite file is left as it was."""
    source_url = f"sqlite:///{demo_home / 'smartpurse.db'}"
    source = open_database(source_url)
    before = (demo_home / "smartpurse.db").read_bytes()
    with pg_schema("copy") as target_url:
        done = _smartpurse(demo_home, "database", "copy", "--to", target_url)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["check_ok"] is True and result["per_table"]["records"] > 160
        target = open_database(target_url)
        try:
            there, here = _tables(target), _tables(source)
            assert there == here
            assert sum(len(rows) for rows in here.values()) == result["rows"]
            assert _reports(target) == _reports(source)
            check = _smartpurse(demo_home, "check", "--full", db=target_url)
            assert check.returncode == 0 and json.loads(check.stdout)["ok"] is True, check.stdout + check.stderr
            with target.begin() as conn:
                largest = conn.execute(select(func.max(journal_entries.c.id))).scalar_one()
                assert ledger.open_entry(conn, "batch", "after the move", dt.date(2027, 1, 1)) == largest + 1
                conn.rollback()
            checked = _tables(target)  # the check proved the entries it read
            again = _smartpurse(demo_home, "database", "copy", "--to", target_url)
            assert again.returncode == 6 and "holds data already" in again.stderr, again.stderr
            assert _tables(target) == checked
        finally:
            target.dispose()
    source.dispose()
    assert (demo_home / "smartpurse.db").read_bytes() == before


@pytest.mark.slow
def test_a_copy_that_stops_half_way_leaves_the_target_as_it_was(demo_home: Path, tmp_path: Path) -> None:
    """Interrupted in the middle of the records (as Ctrl-C or a full disk would), the copy writes nothing; the
    same copy then runs whole. Into the source itself, or an unreachable server, it is refused in one line."""
    source = open_database(f"sqlite:///{demo_home / 'smartpurse.db'}")
    target = open_database(f"sqlite:///{tmp_path / 'copy.db'}")

    class Stop(Exception):
        pass

    def stop_in_records(table: str, _rows: int) -> None:
        if table == "records":
            raise Stop

    try:
        fresh = _tables(target)
        assert [name for name, rows in fresh.items() if rows] == ["processing_state"]  # what migrations seed
        with pytest.raises(Stop):
            copy_database(source, target, stop_in_records)
        assert _tables(target) == fresh
        assert copy_database(source, target).check_ok
        assert _tables(target) == _tables(source)
        with target.connect() as conn:
            assert conn.execute(select(func.count()).select_from(records)).scalar_one() > 160
        with pytest.raises(CopyRefused, match="the target is the source"):
            copy_database(source, open_database(f"sqlite:///{demo_home}/../{demo_home.name}/smartpurse.db"))
    finally:
        source.dispose()
        target.dispose()
    for args, code, words in ((["database", "copy", "--to", "postgresql+psycopg://nobody@127.0.0.1:9/none"], 7,
                               "cannot open database"),
                              (["database", "copy"], 2, "--to")):
        done = _smartpurse(demo_home, *args)
        assert done.returncode == code and words in done.stderr and "Traceback" not in done.stderr, done.stderr
