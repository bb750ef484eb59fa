"""The processing test world: a fresh database (SQLite or PostgreSQL), keys, terminals, cards.

Each PostgreSQL test gets its own schema (search_path in the URL), dropped after, so
tests never see each other's rows and need no CREATEDB right. Cards and terminals are
synthetic (``processing.synthetic``): real certificates and chain MACs, written fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, insert

from personalization.keyfiles import write_role_keys
from processing import synthetic
from processing.db import open_database
from processing.desk_posting import post_desk_records
from processing.importer import ImportOptions, ImportResult, import_batch
from processing.keys import CardMacs, ProcessingKeys
from processing.locks import import_transaction
from processing.schema.loads import loads
from processing.schema.registry import card_transfers, cards, merchants, terminals
from purse.home import Home
from purse.protocol import DEFAULT_SYSTEM_IDENTIFIER, KeyRef
from purse.rolekeys import RoleKeys, role_key_path
from support import REPO
from support import postgres as pg_env

NOW = 1_700_000_000
DAY = 86_400


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'processing.db'}"
        return
    with pg_env.pg_schema("t") as url:
        yield url


@dataclass
class World:
    url: str
    tmp: Path
    engine: Engine = field(init=False)
    keys: ProcessingKeys = field(init=False)
    terminals: dict[int, synthetic.SynthTerminal] = field(default_factory=dict)
    load_seq: int = 0
    now: int = NOW + 30 * DAY
    parallel_min_records: int | None = None  # 1: every batch goes through the verifying worker
    worker_walk_records_per_card: float | None = None  # 0: that worker also walks the chains; inf: it never does

    def __post_init__(self) -> None:
        self.engine = open_database(self.url)
        self.keys, _ = synthetic.make_keys()

    def merchant(self, merchant_id: int, fee_bps: int = 150, name: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(merchants).values(merchant_id=merchant_id, name=name or f"Shop {merchant_id}",
                                                  fee_bps=fee_bps))

    def terminal(self, terminal_id: int, merchant_id: int, *, register: bool = True) -> synthetic.SynthTerminal:
        if register:
            with self.engine.begin() as conn:
                conn.execute(insert(terminals).values(terminal_id=terminal_id, merchant_id=merchant_id,
                                                      log_key_version=1))
        t = self.terminals[terminal_id] = synthetic.SynthTerminal(self.keys, terminal_id, merchant_id)
        return t

    def card(self, index: int, load: int = 0, when: int = NOW) -> synthetic.SynthCard:
        card = synthetic.make_card(self.keys, index)
        if load:
            self.load(card, load, when)
        return card

    def load(self, card: synthetic.SynthCard, amount: int, when: int = NOW) -> None:
        self.load_seq += 1
        with self.engine.begin() as conn:
            conn.execute(insert(loads).values(**synthetic.load_row(card, amount, when, self.load_seq)))

    def register_card(self, card: synthetic.SynthCard, *, blocked_at: int | None = None) -> None:
        """The registry row personalization writes; ``blocked_at`` as ``cards block`` sets it."""
        import datetime as dt

        with self.engine.begin() as conn:
            conn.execute(insert(cards).values(
                number=card.number, uid=card.uid, key_version=1, currency=643, max_balance=1_000_000,
                expiry=NOW + 365 * DAY, state="blocked" if blocked_at else "issued",
                blocked_at=dt.datetime.fromtimestamp(blocked_at, dt.UTC) if blocked_at else None))

    def lose_card(self, old: synthetic.SynthCard, new_number: str, new_uid: bytes) -> int:
        """The old card (its loads posted) is lost and replaced by ``new_number``, as ``cards replace``
        records it (no chip balance read); the transfer's id."""
        import datetime as dt

        self.register_card(old, blocked_at=NOW + 10)
        with self.engine.begin() as conn:
            conn.execute(insert(cards).values(number=new_number, uid=new_uid, key_version=1, currency=643,
                                              max_balance=1_000_000, expiry=NOW + 365 * DAY, state="issued"))
            transfer_id = conn.execute(insert(card_transfers).values(
                from_number=old.number, to_number=new_number, reason="lost",
                requested_at=dt.datetime.fromtimestamp(NOW, dt.UTC)).returning(card_transfers.c.id)).scalar_one()
        self.ingest_loads()
        return int(transfer_id)

    def options(self, **kw: object) -> ImportOptions:
        kw.setdefault("now", lambda: self.now)
        if self.parallel_min_records is not None:
            kw.setdefault("parallel_min_records", self.parallel_min_records)
        if self.worker_walk_records_per_card is not None:
            kw.setdefault("worker_walk_records_per_card", self.worker_walk_records_per_card)
        return ImportOptions(quarantine_dir=self.tmp / "quarantine", **kw)  # type: ignore[arg-type]

    def ingest_loads(self) -> int:
        """Post what the desks recorded (loads, cash-outs, deposits), as ``smartpurse process`` does first."""
        with import_transaction(self.engine) as conn:
            return post_desk_records(conn, CardMacs(self.keys), now=int(self.now),
                                     gap_seconds=self.options().gap_seconds)

    def process(self, path: Path, **kw: object) -> ImportResult:
        """The desk's loads first (in their own transaction), then the batch."""
        return import_batch(self.engine, path, self.keys, self.options(**kw))


@contextmanager
def world(kind: str, tmp_path: Path) -> Iterator[World]:
    """``kind``: sqlite or postgresql; ``-worker-walks`` or ``-here-walks`` imports every batch the way
    large ones are: a second process verifies while this one stores, and the card chains are walked
    by that worker, or by this process."""
    dialect, _, mode = kind.partition("-")
    with database(dialect, tmp_path) as url:
        w = World(url, tmp_path)
        if mode:
            w.parallel_min_records = 1
            w.worker_walk_records_per_card = 0 if mode == "worker-walks" else float("inf")
        try:
            yield w
        finally:
            w.engine.dispose()


def two_merchants_sales(w: World) -> tuple[synthetic.SynthCard, synthetic.SynthCard]:
    """Merchants 42 (fee 1.5 %) and 43 (no fee); terminal 7 sells, cancels and sells again two days
    later, terminal 8 sells once; both batches imported (4 + 1 records). The two cards."""
    w.merchant(42, fee_bps=150)
    w.merchant(43, fee_bps=0)
    t7, t8 = w.terminal(7, 42), w.terminal(8, 43)
    a, b = w.card(1, load=100_000), w.card(2, load=100_000)
    t7.purchase(a, 10_000, NOW + 100)
    t7.purchase(b, 5_033, NOW + 200)
    t7.add(synthetic.card_record(b, synthetic.RecordType.CANCEL, 5_033, 7, t7.next_seq(), NOW + 300))
    t7.purchase(a, 2_000, NOW + 2 * DAY)  # a later day: not in a settlement until the day before
    t8.purchase(b, 777, NOW + 400)
    assert w.process(t7.close(w.tmp / "t7.spb")).accepted == 4
    assert w.process(t8.close(w.tmp / "t8.spb")).accepted == 1
    return a, b


PASSPHRASE = "processing test passphrase"


def processing_home(path: Path, keys: ProcessingKeys) -> Path:
    """A home whose processing key file holds the synthetic masters."""
    home = Home.open(path)
    role = RoleKeys("processing", 1, DEFAULT_SYSTEM_IDENTIFIER, {KeyRef.TXN: dict(keys.txn_masters)},
                    dict(keys.term_masters), None, None, {}, 1, bytes(32))
    target = role_key_path(home, "processing")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_role_keys(target, role, PASSPHRASE)
    return path


def run_cli(home: Path, db: str, *args: str, as_json: bool = True) -> subprocess.Popen[str]:
    """``smartpurse [--json] ARGS`` as its own process on ``home`` and database ``db``, the passphrase given."""
    env = dict(os.environ, SMARTPURSE_PASSPHRASE=PASSPHRASE, SMARTPURSE_HOME=str(home), SMARTPURSE_DB=db)
    return subprocess.Popen([sys.executable, str(REPO / "cli.py"), *(["--json"] if as_json else []), *args], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
