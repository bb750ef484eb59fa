"""Small batches imported in groups, a transaction for several: the books come out as a serial import's."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from support.backoffice import NOW, World, world

from processing import ledger, synthetic
from processing.check import run_check
from processing.group_import import import_group, verify_batches
from processing.importer import ImportOptions
from processing.keys import CardMacs
from processing.locks import card_keys, group_transaction
from processing.reconcile import ChainWalker
from processing.run import process_files
from processing.schema.processing import anomalies, batches, card_accounts, records, sales
from purse.batch import ENTRY_SIZE, HEADER_SIZE


def _mixed_day(w: World, folder: Path) -> list[Path]:
    """Three terminals' batches over shared cards, in the order a collector lists them, with what goes wrong
    in a real day: a copy of a file, a damaged file, a batch from an unregistered terminal, a record whose
    card certificate fails, and a lost batch (its cards' later records open a gap, walked from storage)."""
    folder.mkdir()
    w.merchant(42)
    w.merchant(43, fee_bps=0)
    deck = [w.card(i, load=100_000) for i in range(12)]
    files: list[Path] = []
    for b in range(2):
        for t_id, merchant in ((1, 42), (2, 42), (3, 43)):
            t = w.terminals.get(t_id) or w.terminal(t_id, merchant)
            for i in range(8):
                t.purchase(deck[(i * 5 + t_id + b) % len(deck)], 10 + i + b, NOW + 100 * b + 10 * t_id + i)
            if t_id == 2 and b == 1:  # one record of a damaged card: the terminal chains what it received
                raw = t.purchase(deck[11], 77, NOW + 500)
                t.entries.pop()
                t._mac = t.entries[-1][1]
                t.add(raw[:-8] + bytes(8))
            files.append(t.close(folder / f"t{t_id}-{b + 1}.spb"))
    lost, late = w.terminal(9, 42), w.terminal(10, 42)
    lost.purchase(deck[0], 5, NOW + 900)
    lost.close(folder / "lost.spb")  # never delivered: card 0's gap stays open
    for i in (1, 2, 3):
        late.purchase(deck[i], 5, NOW + 900 + i)
    after = w.terminal(4, 43)
    for i in range(4):
        after.purchase(deck[i], 6, NOW + 1000 + i)  # after the lost and the late batch: counters jump
    files.append(after.close(folder / "t4-1.spb"))
    files.append(late.close(folder / "t10-1.spb"))  # comes late: cards 1-3 walk on through what t4-1 stored
    resender = w.terminal(5, 42)  # a log restored from backup sends batch 1 again, longer: two records twice
    resender.purchase(deck[6], 3, NOW + 1200)
    resender.purchase(deck[7], 4, NOW + 1201)
    saved = (list(resender.entries), resender._mac)
    files.append(resender.close(folder / "t5-1.spb"))
    resender.entries, resender._mac, resender.batch_seq, resender.next_index, resender.prev_mac = \
        saved[0], saved[1], 0, 1, bytes(8)
    resender.purchase(deck[8], 5, NOW + 1202)
    files.append(resender.close(folder / "t5-1-again.spb"))
    clone = dataclasses.replace(deck[9])  # a cloned card spends its counter at two terminals
    w.terminals[1].purchase(deck[9], 11, NOW + 1300)
    files.append(w.terminals[1].close(folder / "t1-3.spb"))
    w.terminals[3].purchase(clone, 12, NOW + 1301)
    files.append(w.terminals[3].close(folder / "t3-3.spb"))
    stranger = w.terminal(8, 42, register=False)
    stranger.purchase(deck[5], 9, NOW + 1100)
    files.append(stranger.close(folder / "t8-1.spb"))
    # a terminal whose batches 2 and 1 come in that order, then a batch 3 that does not continue 2 (refused), then
    # the batch 1 of a new log: each is checked against the batches opened before it in the same group
    restarted = w.terminal(6, 42)
    for b in (1, 2):
        restarted.purchase(deck[10], 20 + b, NOW + 1400 + b)
        files.append(restarted.close(folder / f"t6-{b}.spb"))
    files[-2:] = files[-1:-3:-1]
    restarted.prev_mac = restarted._mac = bytes([1] * 8)
    restarted.purchase(deck[10], 23, NOW + 1403)
    files.append(restarted.close(folder / "t6-3-broken.spb"))
    new_log = synthetic.SynthTerminal(w.keys, 6, 42, log_id=b"new-log!")
    new_log.purchase(deck[10], 24, NOW + 1404)
    files.append(new_log.close(folder / "t6-new-1.spb"))
    damaged = bytearray(files[0].read_bytes())
    damaged[HEADER_SIZE + 2 * ENTRY_SIZE + 25] ^= 1
    (folder / "t1-1-damaged.spb").write_bytes(bytes(damaged))
    (folder / "t2-1-copy.spb").write_bytes(files[1].read_bytes())
    return [*files[:2], folder / "t1-1-damaged.spb", folder / "t2-1-copy.spb", *files[2:]]


def _books(w: World) -> dict[str, Any]:
    """Everything the import decides, without the ids and clocks that differ between two databases."""
    with w.engine.connect() as conn:
        accounts = {r[0]: tuple(r[1:]) for r in conn.execute(select(
            card_accounts.c.card_number, card_accounts.c.balance, card_accounts.c.chain_counter,
            card_accounts.c.chain_balance, card_accounts.c.max_counter, card_accounts.c.gap_since))}
        b = batches.c
        by_id = {r.id: r.file_name for r in conn.execute(select(b.id, b.file_name))}
        state = {r.file_name: (r.status, r.accepted, r.duplicates, r.reason)
                 for r in conn.execute(select(b.file_name, b.status, b.accepted, b.duplicates, b.reason))}
        found = sorted((r.kind, r.card_number or "", r.counter or 0, by_id.get(r.batch_id, ""), r.fingerprint)
                       for r in conn.execute(select(anomalies)))
        r = records.c
        stored = sorted((n, counter, by_id[batch_id]) for n, counter, batch_id in conn.execute(
            select(r.card_number, r.counter, r.batch_id).where(r.batch_id.is_not(None))))
        sold = sorted((by_id[s.batch_id], s.day, s.purchase_count, s.purchase_total)
                      for s in conn.execute(select(sales)))
        money = sorted((code, ledger.balance(conn, code)) for code in {ledger.CARD_FLOAT, ledger.merchant_payable(42),
                                                                     ledger.merchant_payable(43), ledger.CASH})
        lines = conn.execute(text("SELECT count(*) FROM postings")).scalar_one()
        report = run_check(conn)
    assert report.ok, report.failures
    return {"accounts": accounts, "batches": state, "anomalies": found, "records": stored, "sales": sold,
            "money": money, "postings": lines}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_day_imported_in_groups_books_what_the_serial_import_books(kind: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from processing import run as run_module

    groups: list[int] = []
    real_import_group, real_verify = run_module.import_group, run_module.submit_to_worker
    in_worker: list[int] = []

    def counted(engine: Any, members: list[Any], *args: Any) -> Any:
        groups.append(len(members))
        return real_import_group(engine, members, *args)

    def verified_there(fn: Any, paths: list[Path], *args: Any) -> Any:
        in_worker.append(len(paths))
        return real_verify(fn, paths, *args)

    monkeypatch.setattr(run_module, "import_group", counted)
    monkeypatch.setattr(run_module, "submit_to_worker", verified_there)
    outcomes, books, shapes = {}, {}, {}
    # serial: a transaction per batch; grouped: one group of all; pipelined: groups of two or three files, the
    # worker verifying each full group while the one before is stored
    for how, group_records in (("serial", 0), ("grouped", 20_000), ("pipelined", 20)):
        (tmp_path / how).mkdir()
        groups.clear()
        in_worker.clear()
        with world(kind, tmp_path / how) as w:
            files = _mixed_day(w, tmp_path / how / "inbox")
            w.ingest_loads()
            run = process_files(w.engine, files, w.keys, w.options(group_records=group_records))
            outcomes[how] = [(Path(r.file).name, r.status, r.accepted, r.duplicates, r.held, r.reason)
                             for r in run.batches]
            books[how] = _books(w)
            shapes[how] = (list(groups), list(in_worker))
            with w.engine.connect() as conn:  # what a header says of a batch opened in its group names its id
                ids = {r.file_name: r.id for r in conn.execute(select(batches.c.file_name, batches.c.id))}
                reused = [e["imported_batch_id"] for (e,) in conn.execute(
                    select(anomalies.c.evidence).where(anomalies.c.kind == "batch_seq_reused"))]
            assert reused == [ids["t5-1.spb"]], (how, reused, ids)
    assert shapes["serial"] == ([], []) and shapes["grouped"] == ([19], [])
    sizes, verified = shapes["pipelined"]
    assert len(sizes) >= 3 and all(n > 1 for n in sizes) and len(verified) >= 2, shapes
    assert outcomes["grouped"] == outcomes["serial"] == outcomes["pipelined"]
    assert [o[1] for o in outcomes["serial"]] == ["accepted", "accepted", "rejected", "duplicate", "accepted",
                                                  "accepted", "accepted", "accepted", "accepted", "accepted",
                                                  "accepted", "accepted", "accepted", "accepted", "rejected",
                                                  "accepted", "accepted", "rejected", "accepted"]
    assert [o[2:4] for o in outcomes["serial"] if o[0].startswith("t5-1")] == [(2, 0), (1, 2)]
    assert books["grouped"] == books["serial"] == books["pipelined"]
    kinds = {a[0] for a in books["serial"]["anomalies"]}
    assert {"bad_certificate", "clone", "batch_seq_reused", "terminal_log_started"} <= kinds  # the day's troubles
    refused = {o[0]: o[5] for o in outcomes["serial"] if o[1] == "rejected"}
    assert "does not continue batch 2 of terminal 6" in (refused["t6-3-broken.spb"] or ""), refused
    keys, _ = synthetic.make_keys()
    deck_numbers = [synthetic.make_card(keys, i).number for i in range(4)]
    accounts = books["serial"]["accounts"]
    head = {n: (chain, top, gap is not None) for n, (_, chain, _, top, gap) in accounts.items()}
    assert head[deck_numbers[0]][2] and head[deck_numbers[0]][0] < head[deck_numbers[0]][1]  # the lost batch's gap
    assert all(not gap and chain == top for chain, top, gap in (head[deck_numbers[i]] for i in (1, 2, 3)))


def test_a_batch_another_importer_holds_is_given_back_and_the_rest_imported(tmp_path: Path) -> None:
    """PostgreSQL: a card of one batch is locked by another importer's open transaction; the group imports
    the others without waiting and gives that one back, which imports once the lock is gone."""
    with world("postgresql", tmp_path) as w:
        w.merchant(42)
        a, b, c = (w.card(i, load=10_000) for i in range(3))
        files = []
        for t_id, card in ((1, a), (2, b), (3, c)):
            t = w.terminal(t_id, 42)
            t.purchase(card, 100 * t_id, NOW + t_id)
            files.append(t.close(tmp_path / f"t{t_id}.spb"))
        w.ingest_loads()
        options, macs = w.options(), CardMacs(w.keys)
        held, release = threading.Event(), threading.Event()

        def other_importer() -> None:
            with group_transaction(w.engine, alone=False) as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:cls, :key)"),
                             {"cls": 0x5350_0004, "key": card_keys([b.number])[0]})  # as a batch of card b would
                held.set()
                release.wait(30)

        thread = threading.Thread(target=other_importer)
        thread.start()
        assert held.wait(30)
        try:
            outcome = import_group(w.engine, verify_batches(files, w.keys, macs, options.chunk_records), options)
        finally:
            release.set()
            thread.join()
        assert outcome.busy == [files[1]]
        assert [(p.name, r.status, r.accepted) for p, r in outcome.results] == [("t1.spb", "accepted", 1),
                                                                                ("t3.spb", "accepted", 1)]
        with w.engine.connect() as conn:
            assert conn.execute(select(batches.c.file_name).where(batches.c.file_name == "t2.spb")).first() is None
        again = import_group(w.engine, verify_batches(outcome.busy, w.keys, macs, options.chunk_records), options)
        assert [(p.name, r.status, r.accepted) for p, r in again.results] == [("t2.spb", "accepted", 1)]
        with w.engine.connect() as conn:
            assert ledger.balance(conn, ledger.merchant_payable(42)) == -600
            assert run_check(conn).ok


def _another_importer_imports_before_the_first_lock(monkeypatch: pytest.MonkeyPatch, w: World, raced: Path,
                                                     options: ImportOptions) -> list[str]:
    """Make the next group's first batch lock wait for another importer to import and commit ``raced``:
    the race two importers run into. Returns that import's status, once it has run."""
    from processing import group_import
    from processing.importer import import_batch

    real_try_lock = group_import.try_lock_batch
    raced_once: list[str] = []

    def another_importer_commits_first(*args: Any, **kwargs: Any) -> bool:
        if not raced_once:
            alongside = dataclasses.replace(options, post_desk=False)  # the desk posting waits for the import lock
            raced_once.append(import_batch(w.engine, raced, w.keys, alongside).status)
        return real_try_lock(*args, **kwargs)

    monkeypatch.setattr(group_import, "try_lock_batch", another_importer_commits_first)
    return raced_once


@pytest.mark.postgres
def test_a_batch_another_importer_imports_first_leaves_the_next_group_the_databases_card_states(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: another importer imports one of a group's batches and commits just before the group locks
    it, so the group finds that batch a duplicate. The card states the importer keeps for its next group must
    be the database's after that commit: else the card's next purchase would look like it came after a gap
    that is not there."""
    with world("postgresql", tmp_path) as w:
        w.merchant(42)
        a, b = w.card(1, load=10_000), w.card(2, load=10_000)
        t1, t2 = w.terminal(1, 42), w.terminal(2, 42)
        t1.purchase(a, 100, NOW + 1)
        first = t1.close(tmp_path / "t1-1.spb")
        t2.purchase(b, 200, NOW + 2)
        raced = t2.close(tmp_path / "t2-1.spb")
        t2.purchase(b, 300, NOW + 3)  # the card's next record, in the terminal's next batch
        later = t2.close(tmp_path / "t2-2.spb")
        t1.purchase(a, 400, NOW + 4)
        other = t1.close(tmp_path / "t1-2.spb")
        w.ingest_loads()
        options, macs = w.options(), CardMacs(w.keys)
        raced_once = _another_importer_imports_before_the_first_lock(monkeypatch, w, raced, options)
        outcome = import_group(w.engine, verify_batches([first, raced], w.keys, macs, options.chunk_records),
                               options)
        monkeypatch.undo()
        assert raced_once == ["accepted"]
        assert [(p.name, r.status) for p, r in outcome.results] == [("t1-1.spb", "accepted"),
                                                                     ("t2-1.spb", "duplicate")]
        again = import_group(w.engine, verify_batches([other, later], w.keys, macs, options.chunk_records), options)
        assert [(p.name, r.status) for p, r in again.results] == [("t1-2.spb", "accepted"), ("t2-2.spb", "accepted")]
        with w.engine.connect() as conn:
            chain, top, gap = conn.execute(select(card_accounts.c.chain_counter, card_accounts.c.max_counter,
                                                  card_accounts.c.gap_since)
                                           .where(card_accounts.c.card_number == b.number)).one()
            assert (chain, top, gap) == (b.counter, b.counter, None)
            assert conn.execute(select(anomalies.c.kind)).scalars().all() == []
            assert run_check(conn).ok


@pytest.mark.postgres
def test_a_card_another_importer_moves_before_the_group_locks_it_is_walked_from_its_new_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: another importer stores a different batch of one of a group's cards and commits just before
    the group locks its batches. The group must walk the card from the state after that commit, the one it
    holds the lock on: from an older one its record would look like it came after a gap, and writing that
    head back would hide the other importer's record behind a gap that is not there."""
    with world("postgresql", tmp_path) as w:
        w.merchant(42)
        a, b = w.card(1, load=10_000), w.card(2, load=10_000)
        t1, t2, t3 = w.terminal(1, 42), w.terminal(2, 42), w.terminal(3, 42)
        t1.purchase(a, 100, NOW + 1)
        first = t1.close(tmp_path / "t1-1.spb")
        t3.purchase(b, 200, NOW + 2)  # stored by the other importer
        raced = t3.close(tmp_path / "t3-1.spb")
        t2.purchase(b, 300, NOW + 3)  # the card's next record, in this group
        mine = t2.close(tmp_path / "t2-1.spb")
        w.ingest_loads()
        options, macs = w.options(), CardMacs(w.keys)
        raced_once = _another_importer_imports_before_the_first_lock(monkeypatch, w, raced, options)
        outcome = import_group(w.engine, verify_batches([first, mine], w.keys, macs, options.chunk_records), options)
        assert raced_once == ["accepted"]
        assert [(p.name, r.status) for p, r in outcome.results] == [("t1-1.spb", "accepted"),
                                                                     ("t2-1.spb", "accepted")]
        with w.engine.connect() as conn:
            chain, top, gap, balance = conn.execute(
                select(card_accounts.c.chain_counter, card_accounts.c.max_counter, card_accounts.c.gap_since,
                       card_accounts.c.chain_balance).where(card_accounts.c.card_number == b.number)).one()
            assert (chain, top, gap, balance) == (b.counter, b.counter, None, 10_000 - 500)
            assert run_check(conn).ok


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_group_that_fails_leaves_nothing_of_any_of_its_batches(kind: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure that is no batch's fault (here the database refusing the holders' events of the last batch)
    rolls the whole group back: no batch row, record or posting of any member; the files import afterwards."""
    from processing import importer

    with world(kind, tmp_path) as w:
        w.merchant(42)
        deck = [w.card(i, load=10_000) for i in range(4)]
        files = []
        for t_id in (1, 2, 3):
            t = w.terminal(t_id, 42)
            for card in deck:
                t.purchase(card, t_id, NOW + t_id)
            files.append(t.close(tmp_path / f"t{t_id}.spb"))
        w.ingest_loads()
        calls = []

        def failing_events(*args: object) -> int:
            calls.append(args)
            if len(calls) == 3:
                raise RuntimeError("the disk is full")
            return 0

        monkeypatch.setattr(importer, "batch_events", failing_events)
        with pytest.raises(RuntimeError, match="the disk is full"):
            import_group(w.engine, verify_batches(files, w.keys, CardMacs(w.keys), 32_768), w.options())
        with w.engine.connect() as conn:
            assert conn.execute(select(batches.c.id)).first() is None
            assert conn.execute(select(records.c.counter).where(records.c.batch_id.is_not(None))).first() is None
            assert conn.execute(text("SELECT count(*) FROM postings p JOIN journal_entries e ON e.id = p.entry_id "
                                     "WHERE e.kind = 'batch'")).scalar_one() == 0
        monkeypatch.undo()
        outcome = import_group(w.engine, verify_batches(files, w.keys, CardMacs(w.keys), 32_768), w.options())
        assert [r.status for _, r in outcome.results] == ["accepted"] * 3
        with w.engine.connect() as conn:
            assert ledger.balance(conn, ledger.merchant_payable(42)) == -4 * (1 + 2 + 3)
            assert run_check(conn).ok


@pytest.mark.parametrize("keep", [ChainWalker.KEEP_WAITING, 3], ids=["kept", "mostly from storage"])
@pytest.mark.parametrize("seed", range(4))
def test_records_arriving_in_any_order_close_every_gap_as_the_serial_import_does(
        seed: int, keep: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few cards used at several terminals, their batches delivered in a shuffled order and imported in
    groups of random sizes: a gap opened by a late batch is closed by it, whether the records after it came
    in the same group, in an earlier one (the head moves here and walks on into them) or later (nothing to
    walk yet). The head walks on through the records this run stored beyond it from memory, or from storage
    for the cards whose records were not kept (``keep`` 3: most of them). At the end every card's head is at
    its highest counter, and the books are those of the batches imported one by one in the order made."""
    import random

    monkeypatch.setattr(ChainWalker, "KEEP_WAITING", keep)
    rng = random.Random(seed)
    books, heads = {}, {}
    for how in ("in order", "shuffled"):
        (tmp_path / how).mkdir()
        with world("sqlite", tmp_path / how) as w:
            w.merchant(42)
            deck = [w.card(i, load=100_000) for i in range(5)]
            made: list[Path] = []
            shops = [w.terminal(t_id, 42) for t_id in range(1, 5)]
            draw = random.Random(seed)  # the same day in both databases
            for b in range(12):
                t = shops[draw.randrange(len(shops))]
                for card in draw.sample(deck, 3):
                    t.purchase(card, 1 + draw.randrange(50), NOW + 10 * b)
                made.append(t.close(tmp_path / how / f"b{b:02d}.spb"))
            w.ingest_loads()
            if how == "in order":
                files, group = made, 0
            else:
                files, group = rng.sample(made, len(made)), rng.choice([6, 9, 40])
            run = process_files(w.engine, files, w.keys, w.options(group_records=group))
            assert [r.status for r in run.batches] == ["accepted"] * len(made)
            books[how] = _books(w)
            heads[how] = {n: (chain, top, gap) for n, (_, chain, _, top, gap) in books[how]["accounts"].items()}
    assert all(chain == top and gap is None for chain, top, gap in heads["shuffled"].values()), heads
    assert {k: v for k, v in books["shuffled"].items() if k != "batches"} == \
        {k: v for k, v in books["in order"].items() if k != "batches"}
