"""Batch import throughput: the whole pipeline against the bare insert of the same rows.

    python benchmarks/throughput.py [--records N] [--cards M] [--terminals T] [--db URL ...]

Generates N purchase records from M cards at T terminals as real batch files (real
certificates under each card's diversified TXN key, real chain MACs under each
terminal's log key; built directly with purse.crypto), then, each in a fresh child
process and a fresh database:

* ``import``: ``processing.importer.import_batch`` on every file: parse, batch MAC,
  chain MACs, certificates, trailer, store once, reconcile every card, post the ledger;
* ``bare``: the same rows read as columns (processing.columns) and stored through the same
  bulk path (``RecordStore.insert_batch``),
  without any MAC, reconciliation or posting: the storage limit.

It prints records/s for both, their ratio, and each child's peak memory
(``resource.getrusage``, max RSS). The cards' loads are ingested before the clock
starts (they are the issuer's own table, not the batch). Default databases: a SQLite
file in a temp folder, and PostgreSQL from SMARTPURSE_TEST_PG when set.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from purse.batch import FORMAT_VERSION, BatchHeader, BatchTrailer, Totals, batch_mac  # noqa: E402

NOW = 1_700_000_000


def generate(folder: Path, records: int, cards: int, terminals: int) -> dict[str, Any]:
    """Write T batch files and a loads file; returns what the children need to know."""
    from processing import synthetic

    keys, _ = synthetic.make_keys()
    deck = [synthetic.make_card(keys, i) for i in range(cards)]
    loads = [synthetic.load_row(c, 1_000_000_000, NOW, i + 1) for i, c in enumerate(deck)]
    with open(folder / "loads.jsonl", "w") as f:
        for row in loads:
            f.write(json.dumps({**row, "record": bytes(row["record"]).hex()}) + "\n")  # type: ignore[call-overload]
    files = []
    per = records // terminals
    for t in range(terminals):
        term = synthetic.SynthTerminal(keys, 100 + t, 42)
        path = folder / f"t{100 + t}.spb"
        header = BatchHeader.build(dict(format_version=FORMAT_VERSION, log_key_version=1,
                                        terminal_id=term.terminal_id, merchant_id=42, batch_seq=1, first_index=1,
                                        record_count=per, created=NOW, prev_chain_mac=bytes(8), log_id=term.log_id,
                                        written_count=0))
        totals = Totals()
        chain = term._chain.mac
        prev = bytes(8)
        with open(path, "wb") as f:
            f.write(header)
            buf = []
            for i in range(per):
                card = deck[(i * 7919 + t) % cards]
                raw = synthetic.card_record(card, synthetic.RecordType.PURCHASE, 1 + i % 500, term.terminal_id,
                                            i + 1, NOW + 60 + i // 100)
                prev = chain(raw + prev)
                totals.purchase_count += 1
                totals.purchase_total += 1 + i % 500
                buf.append(raw + prev)
                if len(buf) == 10_000:
                    f.write(b"".join(buf))
                    buf = []
            f.write(b"".join(buf))
            trailer = BatchTrailer.build(dict(record_count=per, final_chain_mac=prev, batch_mac=bytes(8),
                                              **totals.__dict__))[:-8]
            f.write(trailer + batch_mac(term.log_key, header, trailer))
        files.append(str(path))
    return {"files": files, "terminals": [100 + t for t in range(terminals)], "records": per * terminals}


@contextmanager
def _fresh_db(url: str, folder: Path) -> Iterator[str]:
    """A new SQLite file, or a throw-away PostgreSQL schema: every measurement starts empty."""
    if url == "sqlite":
        yield f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    from processing.db import scratch_schema

    with scratch_schema(url, "bench") as scratch:
        yield scratch


def child(mode: str, url: str, folder: Path, spec: dict[str, object]) -> dict[str, object]:
    """One measurement in this (fresh) process; returns rate and peak memory."""
    from sqlalchemy import insert

    from processing import ledger, synthetic
    from processing.batchfile import BatchFile, open_batch
    from processing.columns import EntryColumns
    from processing.db import open_database
    from processing.desk_posting import post_desk_records
    from processing.importer import ImportOptions, import_batch
    from processing.keys import CardMacs
    from processing.locks import import_transaction
    from processing.schema.loads import loads
    from processing.schema.registry import merchants, terminals
    from processing.store import RecordStore

    keys, _ = synthetic.make_keys()
    engine = open_database(url)
    with engine.begin() as conn:
        conn.execute(insert(merchants).values(merchant_id=42, name="Bench", fee_bps=100))
        conn.execute(insert(terminals), [{"terminal_id": t, "merchant_id": 42, "log_key_version": 1}
                                         for t in spec["terminals"]])  # type: ignore[attr-defined]
        rows = [json.loads(line) for line in open(folder / "loads.jsonl")]
        conn.execute(insert(loads), [{**r, "record": bytes.fromhex(r["record"])} for r in rows])
    options = ImportOptions(quarantine_dir=folder / "quarantine", now=lambda: NOW + 86_400, post_desk=False)
    macs = CardMacs(keys)
    files = [Path(p) for p in spec["files"]]  # type: ignore[attr-defined]
    n = 0
    if mode == "import":
        with import_transaction(engine) as conn:
            post_desk_records(conn, macs, now=NOW + 86_400, gap_seconds=options.gap_seconds)
        start = time.perf_counter()
        for path in files:
            result = import_batch(engine, path, keys, options, macs)
            if result.status != "accepted":
                raise SystemExit(f"{path}: {result.reason}")
            n += result.accepted
    else:
        start = time.perf_counter()
        with engine.begin() as conn:
            entry = ledger.open_entry(conn, "batch", "bare insert", dt.date(2023, 11, 14))
            store = RecordStore(conn)
            for path in files:
                batch = open_batch(path)
                h = batch.header

                def chunks(first: bool, batch: BatchFile = batch, h: Any = h) -> Iterator[EntryColumns]:
                    for _, data in batch.chunks():
                        yield EntryColumns(data, h.terminal_id, h.merchant_id, 0, entry)

                store.insert_batch(chunks)
                n += h.record_count
    elapsed = time.perf_counter() - start
    engine.dispose()
    return {"mode": mode, "records": n, "seconds": round(elapsed, 3), "rate": round(n / elapsed),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--cards", type=int, default=10_000)
    ap.add_argument("--terminals", type=int, default=1)
    ap.add_argument("--db", action="append", help="'sqlite' or a PostgreSQL URL; repeatable")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "URL", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, url, folder = args.child
        spec = json.loads((Path(folder) / "spec.json").read_text())
        print(json.dumps(child(mode, url, Path(folder), spec)))
        return
    dbs = args.db or ["sqlite"] + ([os.environ["SMARTPURSE_TEST_PG"]] if os.environ.get("SMARTPURSE_TEST_PG") else [])
    with tempfile.TemporaryDirectory(prefix="sp-bench-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        spec = generate(folder, args.records, args.cards, args.terminals)
        (folder / "spec.json").write_text(json.dumps(spec))
        print(f"generated {spec['records']:,} records from {args.cards:,} cards at {args.terminals} terminals "
              f"in {time.perf_counter() - t0:.1f} s ({sum(os.path.getsize(f) for f in spec['files']) / 2**20:.0f} "
              "MiB of batch files)")
        for db in dbs:
            out = {}
            for mode in ("import", "bare"):
                with _fresh_db(db, folder) as url:
                    proc = subprocess.run([sys.executable, __file__, "--child", mode, url, str(folder)],
                                          capture_output=True, text=True, check=False)
                if proc.returncode:
                    raise SystemExit(f"{mode} on {db} failed: {proc.stderr.strip().splitlines()[-1:]}")
                out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            name = "sqlite" if db == "sqlite" else "postgresql"
            imp, bare = out["import"], out["bare"]
            print(f"{name:10s} import {imp['rate']:>9,} records/s ({imp['seconds']} s, peak RSS "
                  f"{imp['peak_rss_mib']} MiB) | bare insert {bare['rate']:>9,} records/s ({bare['seconds']} s, "
                  f"peak RSS {bare['peak_rss_mib']} MiB) | import/bare {imp['rate'] / bare['rate']:.2f}")


if __name__ == "__main__":
    main()
