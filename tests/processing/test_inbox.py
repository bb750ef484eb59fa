"""A shared inbox of batch files: claims, moves, several importers at once, a watcher stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.backoffice import NOW, World, processing_home, run_cli, world

from processing import inbox as inbox_module
from processing.check import run_check
from processing.importer import ImportResult, ImportStatus
from processing.inbox import Inbox
from processing.schema.processing import batches, inbox_claims, records


def _day(w: World, inbox: Path, terminals: int = 6, batches_each: int = 4, per_batch: int = 60,
         cards: int = 40) -> tuple[int, int]:
    """Batches of several terminals over shared cards, written into ``inbox``; the records the cards made in
    all, and the money left on them."""
    w.merchant(42)
    deck = [w.card(i, load=1_000_000) for i in range(cards)]
    for t_id in range(1, terminals + 1):
        t = w.terminal(t_id, 42)
        for b in range(batches_each):
            for i in range(per_batch):
                t.purchase(deck[(i * 7 + t_id * 3 + b) % cards], 1 + i % 9, NOW + 1000 * b + i)
            t.close(inbox / f"t{t_id:03d}-{b + 1:04d}.spb")
    return sum(c.counter for c in deck), sum(c.balance for c in deck)


def test_a_file_is_claimed_by_one_importer_and_moved_when_done(tmp_path: Path) -> None:
    with world("sqlite", tmp_path) as w:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        _day(w, inbox, terminals=1, batches_each=2)
        (inbox / ".t001-0003.spb").write_bytes(b"being written")
        (inbox / "t001-0004.spb.part").write_bytes(b"being written")
        first, second = Inbox(w.engine, inbox, claimant="a:1"), Inbox(w.engine, inbox, claimant="b:2")
        waiting = first.waiting()
        assert [p.name for p in waiting] == ["t001-0001.spb", "t001-0002.spb"]  # not the files still being written
        digest = first.claim(waiting[0])
        assert digest is not None
        assert second.claim(waiting[0]) is None  # held by the first
        assert second.claim(waiting[1]) is not None
        moved = first.finish(waiting[0], digest, ImportResult(str(waiting[0]), ImportStatus.ACCEPTED))
        assert moved == inbox / "done" / "t001-0001.spb" and moved.exists() and not waiting[0].exists()
        with w.engine.connect() as conn:
            rows = {r.file_name: r for r in conn.execute(select(inbox_claims))}
        assert rows["t001-0001.spb"].outcome == "accepted" and rows["t001-0001.spb"].done_at is not None
        assert rows["t001-0002.spb"].claimed_by == "b:2" and rows["t001-0002.spb"].done_at is None


def test_a_claim_reached_as_the_file_is_finished_leaves_the_finished_claim_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race three importers ran into: the second read the file just before the first moved it to done/ and
    closed its claim. The second's claim then found a finished claim, which a new delivery may take over; it must
    see that the file is gone and leave the first's log as it was, not reopen it for nobody."""
    with world("sqlite", tmp_path) as w:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        _day(w, inbox, terminals=1, batches_each=1)
        first, second = Inbox(w.engine, inbox, claimant="a:1"), Inbox(w.engine, inbox, claimant="b:2")
        path = first.waiting()[0]
        digest = first.claim(path)
        assert digest is not None
        read_file = inbox_module.file_digest
        raced: list[Path] = []

        def read_as_the_first_finishes(p: Path) -> str:
            seen = read_file(p)
            if not raced:  # the second has read the file; now the first moves it and closes its claim
                raced.append(first.finish(path, digest, ImportResult(str(path), ImportStatus.ACCEPTED)))
            return seen

        monkeypatch.setattr(inbox_module, "file_digest", read_as_the_first_finishes)
        assert second.claim(path) is None
        assert raced == [inbox / "done" / path.name]
        with w.engine.connect() as conn:
            row = conn.execute(select(inbox_claims)).one()
        assert (row.claimed_by, row.outcome) == ("a:1", "accepted") and row.done_at is not None
        # the same file delivered again is a new delivery, and the second may take it
        (inbox / path.name).write_bytes((inbox / "done" / path.name).read_bytes())
        assert second.claim(inbox / path.name) == digest


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_groups_files_are_claimed_at_once_and_a_file_finished_meanwhile_is_left_alone(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``claim_all``, as a run claims a group's files: one statement for all, a copy of a file claimed with it,
    a file another importer holds left out, and the race above in the middle of the group: the claims are
    undone and taken one by one, so the others are still claimed and the finished one's log stays."""
    with world(kind, tmp_path) as w:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        _day(w, inbox, terminals=1, batches_each=4)
        first, second = Inbox(w.engine, inbox, claimant="a:1"), Inbox(w.engine, inbox, claimant="b:2")
        waiting = first.waiting()
        (inbox / "t001-0001-copy.spb").write_bytes(waiting[0].read_bytes())
        held, raced_path = waiting[3], waiting[1]
        held_digest, raced_digest = first.claim(held), first.claim(raced_path)
        assert held_digest is not None and raced_digest is not None
        read_file = inbox_module.file_digest
        raced: list[Path] = []

        def read_as_the_first_finishes(p: Path) -> str:
            seen = read_file(p)
            if p == raced_path and not raced:  # the first moves it away and closes its claim right after
                raced.append(first.finish(raced_path, raced_digest, ImportResult(str(p), ImportStatus.ACCEPTED)))
            return seen

        monkeypatch.setattr(inbox_module, "file_digest", read_as_the_first_finishes)
        group = second.waiting()
        assert [p.name for p in group] == ["t001-0001-copy.spb", "t001-0001.spb", "t001-0002.spb", "t001-0003.spb",
                                           "t001-0004.spb"]
        claimed = second.claim_all(group)
        assert sorted(p.name for p in claimed) == ["t001-0001-copy.spb", "t001-0001.spb", "t001-0003.spb"]
        assert claimed[inbox / "t001-0001-copy.spb"] == claimed[inbox / "t001-0001.spb"]
        assert raced == [inbox / "done" / raced_path.name]
        with w.engine.connect() as conn:
            rows = {r.file_name: r for r in conn.execute(select(inbox_claims))}
        assert (rows["t001-0002.spb"].claimed_by, rows["t001-0002.spb"].outcome) == ("a:1", "accepted")
        assert rows["t001-0004.spb"].claimed_by == "a:1" and rows["t001-0004.spb"].done_at is None
        assert {rows[n].claimed_by for n in ("t001-0001.spb", "t001-0003.spb")} == {"b:2"}
        assert "t001-0001-copy.spb" not in rows  # one claim per content: the copy rides on its original's
        # the finished file delivered again, twice over, with nothing racing: claimed in the one statement
        again = [inbox / "t001-0002-again.spb", inbox / "t001-0002-resent.spb"]
        for path in again:
            path.write_bytes((inbox / "done" / raced_path.name).read_bytes())
        assert second.claim_all(again) == {path: raced_digest for path in again}
        with w.engine.connect() as conn:
            row = conn.execute(select(inbox_claims).where(inbox_claims.c.sha256 == raced_digest)).one()
        assert (row.file_name, row.claimed_by, row.done_at) == ("t001-0002-resent.spb", "b:2", None)


def test_a_transactions_files_are_finished_together_and_a_file_that_cannot_move_stops_at_itself(
        tmp_path: Path) -> None:
    """``finish_all`` moves each file and closes the claims of those it moved, in one statement per outcome; a
    file gone from the inbox stops it with a one-line error, after the files before it are closed, and the
    files after it keep their open claims (the run then releases them)."""
    with world("sqlite", tmp_path) as w:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        _day(w, inbox, terminals=1, batches_each=4)
        box = Inbox(w.engine, inbox, claimant="a:1")
        claimed = box.claim_all(box.waiting())
        paths = sorted(claimed)
        assert len(paths) == 4
        results = [ImportResult(str(p), s) for p, s in zip(paths, (ImportStatus.ACCEPTED, ImportStatus.REJECTED,
                                                                    ImportStatus.ACCEPTED, ImportStatus.ACCEPTED),
                                                             strict=True)]
        moved = box.finish_all([(p, claimed[p], r) for p, r in zip(paths[:2], results[:2], strict=True)])
        assert moved == [inbox / "done" / paths[0].name, inbox / "rejected" / paths[1].name]
        paths[3].unlink()  # another hand took it away
        with pytest.raises(inbox_module.InboxError, match="cannot move"):
            box.finish_all([(p, claimed[p], r) for p, r in zip(paths[2:], results[2:], strict=True)])
        with w.engine.connect() as conn:
            outcome = {r.file_name: (r.outcome, r.done_at is not None) for r in conn.execute(select(inbox_claims))}
        assert outcome == {paths[0].name: ("accepted", True), paths[1].name: ("rejected", True),
                           paths[2].name: ("accepted", True), paths[3].name: (None, False)}
        assert (inbox / "done" / paths[2].name).exists()


def test_a_dead_importers_claim_is_taken_over_when_its_lease_ends(tmp_path: Path) -> None:
    with world("sqlite", tmp_path) as w:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        _day(w, inbox, terminals=1, batches_each=1)
        clock = [float(NOW)]
        dead = Inbox(w.engine, inbox, lease_seconds=600, claimant="dead:1", now=lambda: clock[0])
        alive = Inbox(w.engine, inbox, lease_seconds=600, claimant="alive:2", now=lambda: clock[0])
        path = dead.waiting()[0]
        assert dead.claim(path) is not None
        clock[0] += 599
        assert alive.claim(path) is None
        clock[0] += 2
        assert alive.claim(path) is not None


def test_process_inbox_imports_moves_and_says_the_rejected(tmp_path: Path) -> None:
    """The CLI: accepted and duplicate files go to done/, a bad one to rejected/ (exit 1); a second run finds
    nothing; wrong arguments get a usage error (2), a missing folder a bad-input error (6)."""
    with world("sqlite", tmp_path) as w:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        expected, _ = _day(w, inbox, terminals=2, batches_each=2)
        (inbox / "t001-0001-copy.spb").write_bytes((inbox / "t001-0001.spb").read_bytes())
        (inbox / "garbage.spb").write_bytes(b"not a batch")
        home = processing_home(tmp_path / "home", w.keys)
        proc = run_cli(home, w.url, "process", "--inbox", str(inbox))
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        assert "1 of 6 batches rejected" in err
        data = json.loads(out)
        by_file = {Path(b["path"]).name: b["status"] for b in data["batches"]}
        # by name: the copy comes first; the same content delivered again is a duplicate, not a claim refused
        assert by_file == {"garbage.spb": "rejected", "t001-0001-copy.spb": "accepted", "t001-0001.spb": "duplicate",
                           "t001-0002.spb": "accepted", "t002-0001.spb": "accepted", "t002-0002.spb": "accepted"}
        assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == []
        assert sorted(p.name for p in (inbox / "done").iterdir()) == sorted(set(by_file) - {"garbage.spb"})
        assert [p.name for p in (inbox / "rejected").iterdir()] == ["garbage.spb"]
        with w.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(records)).scalar_one() == expected
            claims = {r.file_name: r for r in conn.execute(select(inbox_claims))}
        # the copy and the file have one digest, so one claim, under the last name
        assert {name: r.outcome for name, r in claims.items()} == {
            "garbage.spb": "rejected", "t001-0001.spb": "duplicate", "t001-0002.spb": "accepted",
            "t002-0001.spb": "accepted", "t002-0002.spb": "accepted"}
        assert all(r.done_at is not None for r in claims.values())
        again = run_cli(home, w.url, "process", "--inbox", str(inbox))
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert json.loads(out)["batches"] == []
        for args, code, words in ((["process"], 2, "give batch FILES or --inbox DIR"),
                                  (["process", "--watch", "1", str(inbox / "done" / "t001-0001.spb")], 2,
                                   "--watch needs --inbox"),
                                  (["process", "--inbox", str(tmp_path / "nowhere")], 6, "no inbox folder")):
            bad = run_cli(home, w.url, *args)
            _, err = bad.communicate(timeout=60)
            assert bad.returncode == code and words in err and "Traceback" not in err, err


@pytest.mark.slow
@pytest.mark.postgres
def test_three_importers_share_one_inbox_and_post_every_record_once(tmp_path: Path) -> None:
    """Three ``process --inbox`` runs at once, over batches that share cards: each file is imported by exactly
    one of them, and the books are those of one serial import (every record once, the invariants hold)."""
    with world("postgresql", tmp_path) as w:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        expected, balances = _day(w, inbox, terminals=8, batches_each=5, per_batch=80, cards=60)
        home = processing_home(tmp_path / "home", w.keys)
        # groups of five batches, so that three importers share forty (a group claims its files before it imports)
        procs = [run_cli(home, w.url, "process", "--inbox", str(inbox), "--group-records", "400") for _ in range(3)]
        outs = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            outs.append(json.loads(out))
        taken = [Path(b["path"]).name for o in outs for b in o["batches"]]
        assert sorted(taken) == sorted(f"t{t:03d}-{b:04d}.spb" for t in range(1, 9) for b in range(1, 6))
        assert all(b["status"] == "accepted" for o in outs for b in o["batches"])
        assert sum(bool(o["batches"]) for o in outs) >= 2, "the work was shared"
        assert len(list((inbox / "done").iterdir())) == 40
        with w.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(records)).scalar_one() == expected
            assert conn.execute(select(func.count()).select_from(batches)).scalar_one() == 40
            claims = conn.execute(select(inbox_claims.c.outcome, func.count()).group_by(inbox_claims.c.outcome)).all()
            assert claims == [("accepted", 40)]
            rep = run_check(conn)
            assert rep.ok, rep.failures
            assert rep.figures["card_float"] == balances


@pytest.mark.slow
def test_a_watching_importer_takes_new_files_and_stops_on_sigterm(tmp_path: Path) -> None:
    with world("sqlite", tmp_path) as w:
        inbox, drop = tmp_path / "inbox", tmp_path / "outbox"
        inbox.mkdir()
        drop.mkdir()
        _day(w, drop, terminals=1, batches_each=3)
        home = processing_home(tmp_path / "home", w.keys)
        proc = run_cli(home, w.url, "process", "--inbox", str(inbox), "--watch", "0.2", as_json=False)
        files = sorted(drop.iterdir())
        for path in files:  # as a collector delivers: written under a .part name, then renamed
            part = inbox / f"{path.name}.part"
            part.write_bytes(path.read_bytes())
            os.replace(part, inbox / path.name)
            time.sleep(0.3)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list((inbox / "done").glob("*.spb"))
                                                  if (inbox / "done").exists() else []) < len(files):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.count(": accepted batch ") == 3 and "accepted 180, duplicates 0, rejected 0" in out, out
        assert sorted(p.name for p in (inbox / "done").iterdir()) == [p.name for p in files]
