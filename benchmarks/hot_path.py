"""The CPU of the import's hot path, without a database: verifying entries and walking card chains.

    python benchmarks/hot_path.py [--records N] [--cards M] [--rounds R]

Builds one real batch (certificates under each card's TXN key, chain MACs under the
terminal's log key), then, R times, verifies it (``processing.verify.verify_file``: chain
MAC, certificate, rows) and walks every card's chain over the rows
(``processing.reconcile.ChainWalker.walk``). The limit measured in the same run is the bare
parse of the same bytes (``struct.iter_unpack`` of every entry, nothing checked); the script
prints ns per record for each and their ratio to the bare parse, min/median/max over the
rounds.

Wall-clock numbers on a shared 2-core VM move by ±30 % from run to run; for an A/B of two
versions of the code, count instructions instead, which are the same whatever else runs:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python benchmarks/hot_path.py --records 5000 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processing.batchfile import open_batch  # noqa: E402
from processing.reconcile import CardWalk, ChainWalker  # noqa: E402
from processing.synthetic import SynthTerminal, make_card, make_keys  # noqa: E402
from processing.verify import verify_file  # noqa: E402
from purse.batch import ENTRY_LAYOUT, HEADER_SIZE, TRAILER_SIZE  # noqa: E402

START = 1_760_000_000
BALANCE = 10**9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--cards", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    keys, _ = make_keys()
    terminal = SynthTerminal(keys, 7, 42)
    cards = [make_card(keys, i) for i in range(args.cards)]
    for card in cards:
        card.balance = BALANCE
    for i in range(args.records):
        terminal.purchase(cards[i % args.cards], 100, START + i)
    with tempfile.TemporaryDirectory() as tmp:
        path = terminal.close(Path(tmp) / "batch.spb")
        entries = path.read_bytes()[HEADER_SIZE:-TRAILER_SIZE]
        bare, verify, walk = [], [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            parsed = sum(1 for _ in ENTRY_LAYOUT.struct.iter_unpack(entries))
            t1 = time.perf_counter()
            rows = [row for chunk in verify_file(open_batch(path), keys) for row in chunk]
            t2 = time.perf_counter()
            walker = ChainWalker({c.number: CardWalk(c.number, True, 0, BALANCE) for c in cards}, {})
            for w in walker.cards.values():
                w.last_seen = -1
            walker.walk(rows, check_order=True)
            t3 = time.perf_counter()
            assert parsed == len(rows) == args.records and not walker.found
            bare.append(t1 - t0)
            verify.append(t2 - t1)
            walk.append(t3 - t2)
    per = 1e9 / args.records
    limit = statistics.median(bare)
    for name, times in (("bare parse", bare), ("verify", verify), ("walk", walk)):
        lo, med, hi = min(times) * per, statistics.median(times) * per, max(times) * per
        print(f"{name:<10} {lo:8.0f} / {med:8.0f} / {hi:8.0f} ns a record (min/median/max of {args.rounds}), "
              f"median {statistics.median(times) / limit:5.1f}x the bare parse")


if __name__ == "__main__":
    main()
