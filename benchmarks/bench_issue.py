"""Throughput of issuing into virtual card images plus the registry (target: 1,000 cards/s).

    python benchmarks/bench_issue.py [--count 10000] [--chunk 1000] [--db URL] [--workers N] [--dir DIR]

Prints cards/s for each stage on its own (in one process; image files both as a batch
creates them and as a resumed batch replaces them), then for the whole path as
``cards issue`` runs it (reserve numbers, personalize in memory and write images — in
worker processes unless ``--workers 0`` — one syncfs per chunk, register in bulk), so a
regression shows where it comes from. ``--dir`` puts the scratch folder (images, SQLite)
on the disk to be measured: creating files bounds this path, and what one costs depends
on the file system and, on a shared machine, on the minute (20 µs to 800 µs here).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from personalization.imagefiles import make_durable, write_image
from personalization.issuing import (
    CardProfile,
    card_profile,
    issue_to_images,
    issuer_sam,
    personalize,
    requests_for_count,
)
from personalization.keystore import Keystore
from processing.db import open_database, scratch_schema
from purse.card.applet import PurseApplet
from purse.card.storage import write_image_file
from purse.home import Home
from purse.transport.virtual import VirtualTransport


def rate(label: str, count: int, seconds: float) -> None:
    print(f"{label:<58} {count:>7} cards {seconds:7.2f} s {count / seconds:9.0f} cards/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--db", help="registry database URL [SQLite in a temporary folder]")
    parser.add_argument("--workers", type=int, help="personalizing processes (0 = in the issuing process) "
                                                   "[one per core but one]")
    parser.add_argument("--dir", help="create the scratch folder (images, SQLite) in DIR [the system temp folder]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        home = Home.open(folder / "home")
        store = Keystore.generate(1, home.system_identifier)
        profile: CardProfile = card_profile(home, store)
        sam = issuer_sam(store)

        n = min(args.count, 3000)
        started = time.perf_counter()
        images = []
        for i in range(n):
            card = PurseApplet.manufacture()
            personalize(VirtualTransport(card), sam, f"627700{i + 1:09d}0", profile, "2468")
            images.append(card.image_bytes())
        rate("personalize in memory (10 APDUs, 4 AN10922)", n, time.perf_counter() - started)

        out = folder / "fsync-each"
        out.mkdir()
        started = time.perf_counter()
        for i, image in enumerate(images[:1000]):
            write_image_file(out / f"{i}.card", image)
        rate("write images, fsync each (MemoryStorage.save)", 1000, time.perf_counter() - started)

        out = folder / "syncfs"
        out.mkdir()
        started = time.perf_counter()
        for i, image in enumerate(images):
            write_image(out / f"{i}.card", image)
        make_durable(out)
        rate("write new images (final name, O_EXCL), one syncfs", n, time.perf_counter() - started)
        started = time.perf_counter()
        for i, image in enumerate(reversed(images)):  # every name exists now: the resume path
            write_image(out / f"{i}.card", image)
        make_durable(out)
        rate("rewrite existing images (temp + rename), one syncfs", n, time.perf_counter() - started)

        with _database(args.db, folder) as url:
            engine = open_database(url)
            started = time.perf_counter()
            report = issue_to_images(engine, sam, profile, requests_for_count(args.count), "bench", folder / "cards",
                                     chunk=args.chunk, workers=args.workers)
            workers = "workers: default" if args.workers is None else f"workers: {args.workers}"
            rate(f"cards issue, whole path ({engine.dialect.name}, chunk {args.chunk}, {workers})",
                 len(report.issued), time.perf_counter() - started)
            engine.dispose()


@contextmanager
def _database(url: str | None, folder: Path) -> Iterator[str]:
    """SQLite in ``folder``; on PostgreSQL a throw-away schema, so the bench never touches real tables."""
    if url is None:
        yield f"sqlite:///{folder / 'registry.db'}"
        return
    if not url.startswith("postgresql"):
        yield url
        return
    with scratch_schema(url, "bench") as scratch:
        yield scratch

if __name__ == "__main__":
    main()
