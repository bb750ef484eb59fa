"""A day of a city-sized network: many small batches, many cards, a database that already holds a history.

    python benchmarks/city_day.py [--terminals T] [--per-batch R] [--cards C] [--touched N] [--history H]
                                  [--importers 1,2] [--repeat K] [--points] [--db sqlite|URL ...]

The issue's full shape is ``--terminals 5000 --per-batch 400 --cards 5000000 --touched 1000000
--history 20000000``; the defaults are a tenth of the cards and a hundredth of the history, so the script
runs in minutes on a laptop. Everything is real: each card's records are certified under its diversified
TXN key, each terminal's batches are chained under its log key, and the loads are the desk's certified
records (processing.synthetic), so the import verifies exactly what it verifies in production.

For each database, in fresh child processes on a fresh database each:

* **history**: the loads of every card and H purchases (at 20 history terminals) are imported before the
  clock starts, as ``smartpurse process`` imports them, in a process of their own;
* **import**: in a fresh process on that database (so its peak memory is the import's), the day, T batches
  of R purchases from N of the C cards, imported as ``smartpurse process`` imports them
  (``processing.run.process_files``: small batches in groups, ``--group-records``), in the order an inbox
  lists them (by name: a card's records from several terminals arrive out of counter order, as in a real
  day); the time of each batch is kept as its result comes (a group's together), to compare the first
  tenth with the last (a cost that grows with the rows stored shows here);
* **bare**: the same day's rows stored by the bulk path alone (``RecordStore.insert_batch``, no MAC,
  reconciliation or posting) into a database holding the same history: the storage limit;
* **importers K** (PostgreSQL): K importer processes started together, taking the day's files from one
  shared inbox (``smartpurse process --inbox``: processing.run.process_inbox), against one database; the
  speed-up is one importer's time over K's. Each file must be taken once and every record stored once.

After the day, ``check`` runs as an accountant runs it (the history was checked before the clock, so it
reads the day's records), then ``check --full`` (every record), then each report an accountant runs over the
whole history (``REPORTS``). It prints records/s, the ratio to the bare insert, the first and last tenth's mean
batch time, the peak memory of the day's import (a fresh process, as ``smartpurse process`` is: the setup,
loading millions of cards, ran in another), how many of the machine's cores were busy (the database server's
too: what bounds K importers), the checks' and the reports' seconds and the speed-up of K importers;
``--json`` prints the measurements as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import _fresh_db  # noqa: E402  (the same fresh SQLite file / scratch schema)

NOW = 1_700_000_000
HISTORY_TERMINALS = 20
MERCHANT = 42
POINTS_PROGRAM = 9  # with --points every purchase earns a point of it


def generate(folder: Path, a: argparse.Namespace) -> dict[str, Any]:
    """The loads, the history batches and the day's batches as files; what the children need to know."""
    from processing import synthetic

    rng = random.Random(a.seed)
    keys, _ = synthetic.make_keys()
    deck = [synthetic.make_card(keys, i) for i in range(a.cards)]
    with open(folder / "loads.jsonl", "w") as f:
        for i, card in enumerate(deck):
            row = synthetic.load_row(card, 1_000_000_000, NOW, i + 1)
            f.write(json.dumps({**row, "record": bytes(row["record"]).hex()}) + "\n")  # type: ignore[call-overload]
    history = []
    points = {"program_id": POINTS_PROGRAM, "earned": 1} if a.points else {}
    per_history = a.history // HISTORY_TERMINALS
    for t in range(HISTORY_TERMINALS):
        term = synthetic.SynthTerminal(keys, 1 + t, MERCHANT)
        for i in range(per_history):
            term.purchase(deck[(i * HISTORY_TERMINALS + t) % a.cards], 1 + i % 300, NOW + 60 + i // 50, **points)
        history.append(str(term.close(folder / f"history-{t}.spb")))
    touched = rng.sample(range(a.cards), a.touched)
    day = []
    for t in range(a.terminals):
        term = synthetic.SynthTerminal(keys, 10_000 + t, MERCHANT)
        for i in range(a.per_batch):
            term.purchase(deck[touched[rng.randrange(a.touched)]], 1 + i % 500, NOW + 86_400 + i, **points)
        day.append(str(term.close(folder / f"day-{t}.spb")))
    return {"history": history, "day": day, "records": a.terminals * a.per_batch, "cards": a.cards,
            "history_records": per_history * HISTORY_TERMINALS,
            "terminals": [1 + t for t in range(HISTORY_TERMINALS)] + [10_000 + t for t in range(a.terminals)]}


def _prepare(url: str, folder: Path, spec: dict[str, Any], bare: bool) -> Any:
    """A database with the registry, the loads and the history in it; its engine."""
    from sqlalchemy import insert

    from processing import synthetic
    from processing.db import open_database
    from processing.desk_posting import post_desk_records
    from processing.importer import import_batch
    from processing.keys import CardMacs
    from processing.locks import import_transaction
    from processing.schema.loads import loads
    from processing.schema.registry import merchants, terminals

    keys, _ = synthetic.make_keys()
    engine = open_database(url)
    with engine.begin() as conn:
        conn.execute(insert(merchants).values(merchant_id=MERCHANT, name="City", fee_bps=100))
        conn.execute(insert(terminals), [{"terminal_id": t, "merchant_id": MERCHANT, "log_key_version": 1}
                                         for t in spec["terminals"]])
        with open(folder / "loads.jsonl") as f:
            batch: list[dict[str, Any]] = []
            for line in f:
                r = json.loads(line)
                batch.append({**r, "record": bytes.fromhex(r["record"])})
                if len(batch) == 50_000:
                    conn.execute(insert(loads), batch)
                    batch = []
            if batch:
                conn.execute(insert(loads), batch)
    if bare:
        _bare(engine, [Path(p) for p in spec["history"]])
    else:
        with import_transaction(engine) as conn:
            post_desk_records(conn, CardMacs(keys), now=NOW + 86_400, gap_seconds=86_400)
        options = _options(folder)
        for path in spec["history"]:
            result = import_batch(engine, Path(path), keys, options)
            if result.status != "accepted":
                raise SystemExit(f"history {path}: {result.reason}")
        _check(engine, full=True)  # the history was checked before: the day's check reads the day
    return engine


def _check(engine: Any, full: bool) -> float:
    """Seconds ``smartpurse check`` takes (``--full``: every record); it must find the books in order."""
    from processing.check import check_snapshot, run_check

    start = time.perf_counter()
    with check_snapshot(engine) as conn:
        rep = run_check(conn, full=full, prove=True)
    if not rep.ok:
        raise SystemExit(f"check failed: {rep.failures}")
    return round(time.perf_counter() - start, 3)


def _options(folder: Path, group: int | None = None) -> Any:
    """Import options; with a programs folder (``--programs``, the CLI's default) points are replayed too."""
    from processing.importer import ImportOptions
    from purse.loyalty import example_program_bytes, parse_program_bytes

    programs = {}
    if (folder / "programs").exists():
        program = parse_program_bytes(example_program_bytes())
        programs = {program.program_id: program}
    grouping = {} if group is None else {"group_records": group}
    return ImportOptions(quarantine_dir=folder / "quarantine", now=lambda: NOW + 2 * 86_400, post_desk=False,
                         programs=programs, **grouping)


def _bare(engine: Any, files: list[Path]) -> int:
    import datetime as dt
    from collections.abc import Iterator

    from processing import ledger
    from processing.batchfile import BatchFile, open_batch
    from processing.columns import EntryColumns
    from processing.store import RecordStore

    n = 0
    with engine.begin() as conn:
        entry = ledger.open_entry(conn, "batch", "bare insert", dt.date(2023, 11, 14))
        store = RecordStore(conn)
        for path in files:
            batch = open_batch(path)

            def chunks(first: bool, batch: BatchFile = batch) -> Iterator[EntryColumns]:
                for _, data in batch.chunks():
                    yield EntryColumns(data, batch.header.terminal_id, batch.header.merchant_id, 0, entry)

            store.insert_batch(chunks)
            n += batch.header.record_count
    return n


def child(mode: str, url: str, folder: Path, spec: dict[str, Any], inbox: str | None,
          group: int | None) -> dict[str, Any]:
    """One measurement in this process: ``prepare`` (the loads and history only), then, on the database it
    filled, ``import`` or ``worker``; or ``bare`` (its own setup, the history stored the bare way too)."""
    from processing import synthetic
    from processing.db import open_database
    from processing.inbox import Inbox
    from processing.run import process_files, process_inbox

    keys, _ = synthetic.make_keys()
    if mode in ("import", "worker"):  # a prepared database; a worker is one of K importers on the shared inbox
        engine = open_database(url)
    else:
        engine = _prepare(url, folder, spec, bare=mode == "bare")
    if mode == "prepare":
        return {"mode": mode}
    times, n = [], 0
    cpu_before = _machine_cpu()
    start = time.perf_counter()
    if mode == "bare":
        n = _bare(engine, [Path(p) for p in spec["day"]])
    elif mode == "worker":
        run = process_inbox(engine, Inbox(engine, Path(inbox or "")), keys, _options(folder, group))
        n = run.accepted
        times = [0.0]
    else:  # as ``smartpurse process FILES`` runs: small batches in groups, a transaction each
        heard_at: list[float] = []

        def heard(result: Any) -> None:  # the batches of a group are heard of together, when it commits
            if result.status != "accepted":
                raise SystemExit(f"{result.file}: {result.reason}")
            heard_at.append(time.perf_counter())

        # by name, as an inbox lists them: a card's records from several terminals arrive out of counter order
        arrival = sorted(Path(p) for p in spec["day"])
        run = process_files(engine, arrival, keys, _options(folder, group), on_result=heard)
        n = run.accepted
        times = _batch_seconds(start, heard_at)
    elapsed = time.perf_counter() - start
    busy = _cores_busy(cpu_before)
    peak = _peak_rss_mib()  # the import's, before the checks and reports below read what they read
    checks = {"check_new_s": _check(engine, full=False), "check_full_s": _check(engine, full=True),
              "reports_s": _reports(engine)} if mode == "import" else {}
    engine.dispose()
    tenth = max(1, len(times) // 10)
    return {"mode": mode, "records": n, "seconds": round(elapsed, 3), "rate": round(n / elapsed),
            "first_tenth_ms": round(1000 * statistics.mean(times[:tenth]), 2) if times else None,
            "last_tenth_ms": round(1000 * statistics.mean(times[-tenth:]), 2) if times else None,
            "peak_rss_mib": peak, "cores_busy": busy, **checks}


_SAME_COMMIT = 0.001  # s: results heard closer together than this were told by one commit (a group's)


def _batch_seconds(start: float, heard_at: list[float]) -> list[float]:
    """Each batch's share of the wall time: the batches told together by one group's commit share evenly the
    time since the commit before. Taken as heard, the first batch of a group carried the whole group and the
    others nothing, so the last tenth's mean said 0 ms when its groups were as slow as the first's."""
    times: list[float] = []
    last, size = start, 0
    for i, at in enumerate(heard_at):
        size += 1
        if i + 1 == len(heard_at) or heard_at[i + 1] - at > _SAME_COMMIT:
            times += [(at - last) / size] * size
            last, size = at, 0
    return times


# The reports an accountant runs over the whole history (``smartpurse report KIND``), timed after the day: those
# that read aggregates cost the same at any history, those that read ``records`` grow with it.
REPORTS = ("settlement", "float", "points", "cards", "terminals", "anomalies", "dormant", "trial-balance")


def _reports(engine: Any) -> dict[str, float]:
    """Seconds each of ``REPORTS`` takes over every day stored, as ``smartpurse report KIND`` builds it."""
    from processing import reports

    seconds = {}
    with engine.connect() as conn:
        for kind in REPORTS:
            start = time.perf_counter()
            reports.build(conn, kind)
            seconds[kind] = round(time.perf_counter() - start, 3)
    return seconds


def _machine_cpu() -> tuple[int, int]:
    """(busy, all) CPU time of the whole machine so far, in clock ticks (/proc/stat): the database server's
    processes count too, which an importer's own rusage would leave out."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def _cores_busy(before: tuple[int, int]) -> float:
    """How many of the machine's cores were busy on average since ``before`` (``_machine_cpu``)."""
    busy, total = (now - then for now, then in zip(_machine_cpu(), before, strict=True))
    return round(busy / total * (os.cpu_count() or 1), 2) if total else 0.0


def _peak_rss_mib() -> float:
    """This process's peak resident memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _run(folder: Path, mode: str, url: str, *options: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, url, str(folder), *options], capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{mode} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class ImportersRun(NamedTuple):
    """K importers on one shared inbox: the wall time, one importer's largest peak memory, the cores busy."""

    seconds: float
    peak_rss_mib: float
    cores_busy: float


def importers(db: str, folder: Path, spec: dict[str, Any], k: int, *options: str) -> ImportersRun:
    """Seconds for K importer processes, started together on one shared inbox holding the day, to import it
    into one prepared database, and the largest peak memory (MiB) of one of them: a fresh process, as a
    ``process --inbox`` run is, so its peak is the import's working set alone. Checks that each file was
    taken by exactly one of them and every record stored once, as a serial import would."""
    import shutil

    from sqlalchemy import func, select

    from processing.db import open_database
    from processing.schema.processing import records

    with _fresh_db(db, folder) as url:
        _run(folder, "prepare", url)
        inbox = folder / f"inbox-{k}"
        shutil.rmtree(inbox, ignore_errors=True)
        inbox.mkdir()
        for path in spec["day"]:
            shutil.copy(path, inbox)
        cpu_before = _machine_cpu()
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "--child", "worker", url, str(folder),
                                   "--inbox", str(inbox), *options],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(k)]
        accepted, peak = 0, 0.0
        for proc in procs:
            out, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"importer failed: {(err.strip().splitlines() or ['?'])[-1]}")
            said = json.loads(out.strip().splitlines()[-1])
            accepted += said["records"]
            peak = max(peak, said["peak_rss_mib"])
        elapsed = time.perf_counter() - start
        busy = _cores_busy(cpu_before)
        engine = open_database(url)
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(records)).scalar_one()
        engine.dispose()
        expected = spec["records"] + spec["history_records"] + spec["cards"]  # the day, the history, a load per card
        if accepted != spec["records"] or stored != expected \
                or any(inbox.glob("*.spb")) or len(list((inbox / "done").iterdir())) != len(spec["day"]):
            raise SystemExit(f"{k} importers: {accepted} records accepted, {stored} stored: not the serial import's")
        return ImportersRun(elapsed, peak, busy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--terminals", type=int, default=500)
    ap.add_argument("--per-batch", type=int, default=400)
    ap.add_argument("--cards", type=int, default=500_000)
    ap.add_argument("--touched", type=int, default=100_000)
    ap.add_argument("--history", type=int, default=200_000)
    ap.add_argument("--importers", default="1,2", help="K values for the parallel importers (PostgreSQL)")
    ap.add_argument("--repeat", type=int, default=1, help="measure each mode this many times (min/median/max)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--programs", action="store_true", help="import with a loyalty program (points replayed)")
    ap.add_argument("--points", action="store_true", help="every purchase earns a point of a loyalty program "
                    "(the points report then has a program's days to read)")
    ap.add_argument("--db", action="append", help="'sqlite' or a PostgreSQL URL; repeatable")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "URL", "FOLDER"), help=argparse.SUPPRESS)
    ap.add_argument("--inbox", help=argparse.SUPPRESS)
    ap.add_argument("--group-records", type=int, help="import small batches in groups of about this many records "
                    "(ImportOptions.group_records; 0: a transaction per batch)")
    a = ap.parse_args()
    if a.child:
        mode, url, folder = a.child
        spec = json.loads((Path(folder) / "spec.json").read_text())
        print(json.dumps(child(mode, url, Path(folder), spec, a.inbox, a.group_records)))
        return
    if a.touched > a.cards:
        raise SystemExit("--touched cannot exceed --cards")
    grouping = [] if a.group_records is None else ["--group-records", str(a.group_records)]
    dbs = a.db or ["sqlite"] + ([os.environ["SMARTPURSE_TEST_PG"]] if os.environ.get("SMARTPURSE_TEST_PG") else [])
    report: dict[str, Any] = {"shape": {k: getattr(a, k) for k in ("terminals", "per_batch", "cards", "touched",
                                                                   "history", "programs", "group_records")},
                              "load": os.getloadavg(), "databases": {}}
    with tempfile.TemporaryDirectory(prefix="sp-city-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        spec = generate(folder, a)
        (folder / "spec.json").write_text(json.dumps(spec))
        if a.programs:
            (folder / "programs").touch()
        if not a.json:
            print(f"generated {a.cards:,} cards' loads, {a.history:,} history records and a day of "
                  f"{spec['records']:,} records in {a.terminals:,} batches from {a.touched:,} cards in "
                  f"{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.2f}")
        for db in dbs:
            name = "sqlite" if db == "sqlite" else "postgresql"
            runs: dict[str, list[dict[str, Any]]] = {"import": [], "bare": []}
            for _ in range(a.repeat):
                for mode in ("import", "bare"):
                    with _fresh_db(db, folder) as url:
                        if mode == "import":
                            _run(folder, "prepare", url)
                        runs[mode].append(_run(folder, mode, url, *grouping))
            out: dict[str, Any] = {"runs": runs}
            ratios = [i["rate"] / b["rate"] for i, b in zip(runs["import"], runs["bare"], strict=True)]
            out["ratio"] = {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)}
            if name == "postgresql":
                ks = [int(k) for k in a.importers.split(",")]
                measured = {k: importers(db, folder, spec, k, *grouping) for k in ks}
                seconds = {k: run.seconds for k, run in measured.items()}
                out["importers_seconds"] = seconds
                out["importers_peak_rss_mib"] = {k: run.peak_rss_mib for k, run in measured.items()}
                out["importers_cores_busy"] = {k: run.cores_busy for k, run in measured.items()}
                out["speedup"] = {k: seconds[ks[0]] / s for k, s in seconds.items()}
            report["databases"][name] = out
            if not a.json:
                imp = runs["import"][len(runs["import"]) // 2]
                print(f"{name:10s} import {imp['rate']:>8,} records/s, batches {imp['first_tenth_ms']} ms (first "
                      f"tenth) -> {imp['last_tenth_ms']} ms (last tenth), peak RSS {imp['peak_rss_mib']} MiB, check "
                      f"{imp['check_new_s']} s (--full {imp['check_full_s']} s) | "
                      f"import/bare {out['ratio']['min']:.2f}/{out['ratio']['median']:.2f}/{out['ratio']['max']:.2f}"
                      f" (min/median/max), {imp['cores_busy']} cores busy"
                      + (f" | importers speed-up {out['speedup']}, cores busy {out['importers_cores_busy']}"
                         if "speedup" in out else ""))
                print(f"{'':10s} reports over the whole history (s): {imp['reports_s']}")
    if a.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
