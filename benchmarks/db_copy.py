"""Moving the books from SQLite to PostgreSQL: ``smartpurse database copy`` against a raw COPY of the records.

    SMARTPURSE_TEST_PG=postgresql+psycopg://… python benchmarks/db_copy.py [--cards C] [--history H] [--repeat K]

A SQLite database is filled as a network fills it (city_day's loads of C cards and H purchases of history,
imported by ``import_batch``: real certificates, chains and postings), then copied K times into a fresh
PostgreSQL schema each by ``processing.db_copy.copy_database``: every table, the row counts compared and
``check --full`` on the copy, in one transaction. The limit, measured in the same run, is the bare move of
the largest table alone: the records read from the SQLite file and sent by ``COPY`` into an empty
``records`` table of a fresh schema, nothing compared or checked. It prints the rows, the seconds of both,
min/median/max, and the ratio (the limit's time over the tool's); ``--json`` prints them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _source(folder: Path, cards: int, history: int) -> Any:
    """A SQLite database holding C cards' loads and H purchases, imported and checked; its engine."""
    import city_day

    shape = argparse.Namespace(terminals=1, per_batch=1, cards=cards, touched=1, history=history, seed=7,
                               points=False)
    spec = city_day.generate(folder, shape)
    return city_day._prepare(f"sqlite:///{folder / 'source.db'}", folder, spec, bare=False)


def _bare(source: Any, url: str) -> tuple[int, float]:
    """The records alone: read from SQLite and sent by COPY into an empty records table (the limit)."""
    from sqlalchemy import select

    from processing.db import open_database
    from processing.rows import ROW_FIELDS
    from processing.schema.processing import records

    target = open_database(url)
    try:
        start = time.perf_counter()
        n = 0
        with source.connect() as read, target.begin() as write:
            cur = write.connection.driver_connection.cursor()  # type: ignore[union-attr]
            rows = read.execution_options(stream_results=True, yield_per=10_000).execute(
                select(*[records.c[name] for name in ROW_FIELDS]))
            with cur.copy(f"COPY records ({', '.join(ROW_FIELDS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(tuple(row))
                    n += 1
        return n, time.perf_counter() - start
    finally:
        target.dispose()


def _tool(source: Any, url: str) -> tuple[int, float, int]:
    """The copy as ``smartpurse database copy`` makes it: (rows, seconds, records)."""
    from processing.db import open_database
    from processing.db_copy import copy_database

    target = open_database(url)
    try:
        start = time.perf_counter()
        result = copy_database(source, target)
        seconds = time.perf_counter() - start
    finally:
        target.dispose()
    if not result.check_ok:
        raise SystemExit("the copy did not pass check")
    return sum(result.rows.values()), seconds, result.rows["records"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cards", type=int, default=20_000)
    ap.add_argument("--history", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    pg = os.environ.get("SMARTPURSE_TEST_PG")
    if not pg:
        raise SystemExit("set SMARTPURSE_TEST_PG to a PostgreSQL URL to copy into")
    from processing.db import scratch_schema

    with tempfile.TemporaryDirectory(prefix="sp-copy-") as tmp:
        source = _source(Path(tmp), a.cards, a.history)
        tool, bare = [], []
        rows = records = 0
        for _ in range(a.repeat):
            with scratch_schema(pg, "copy") as url:
                rows, seconds, records = _tool(source, url)
                tool.append(seconds)
            with scratch_schema(pg, "bare") as url:
                n, seconds = _bare(source, url)
                assert n == records, (n, records)
                bare.append(seconds)
        source.dispose()
    ratios = [b / t for b, t in zip(bare, tool, strict=True)]

    def spread(xs: list[float]) -> dict[str, float]:
        return {"min": round(min(xs), 3), "median": round(statistics.median(xs), 3), "max": round(max(xs), 3)}

    out = {"cards": a.cards, "history": a.history, "rows": rows, "records": records, "load": os.getloadavg(),
           "copy_s": spread(tool), "bare_records_copy_s": spread(bare), "ratio": spread(ratios),
           "copy_rows_per_s": round(rows / statistics.median(tool))}
    if a.json:
        print(json.dumps(out))
        return
    print(f"copied {rows:,} rows ({records:,} records) in {out['copy_s']} s; the records alone by COPY "
          f"{out['bare_records_copy_s']} s; bare/copy {out['ratio']} (min/median/max)")


if __name__ == "__main__":
    main()
