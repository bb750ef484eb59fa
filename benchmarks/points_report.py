"""Memory and time of ``report points`` against the number of records stored.

    python benchmarks/points_report.py [--records N] [--cards C] [--db sqlite|URL]

Stores N and then 2N records (certified purchases of C cards, processing.synthetic) by the bulk path into a
fresh database each, then runs ``processing.reports.points_report`` in a fresh child process and prints its
time and peak RSS. Flat memory from N to 2N is the target; PostgreSQL from SMARTPURSE_TEST_PG by default.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import city_day  # noqa: E402
from throughput import _fresh_db  # noqa: E402

CHILD = r"""
import resource, sys, time
sys.path.insert(0, sys.argv[1])
from processing import reports
from processing.db import open_database
engine = open_database(sys.argv[2])
start = time.perf_counter()
with engine.connect() as conn:
    reports.points_report(conn, None, None)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{time.perf_counter() - start:.2f} s, peak RSS {rss:.0f} MiB")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--cards", type=int, default=20_000)
    ap.add_argument("--db", default=os.environ.get("SMARTPURSE_TEST_PG", "sqlite"))
    a = ap.parse_args()
    root = str(Path(__file__).resolve().parents[1])
    for records in (a.records, 2 * a.records):
        shape = argparse.Namespace(terminals=1, per_batch=1, cards=a.cards, touched=1, history=records, seed=7)
        with tempfile.TemporaryDirectory(prefix="sp-points-") as tmp:
            folder = Path(tmp)
            spec = city_day.generate(folder, shape)
            with _fresh_db(a.db, folder) as url:
                city_day._prepare(url, folder, spec, bare=True).dispose()
                done = subprocess.run([sys.executable, "-c", CHILD, root, url], capture_output=True, text=True,
                                      check=False)
                said = done.stdout.strip() or (done.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{records:>10,} records: report points {said}")


if __name__ == "__main__":
    main()
