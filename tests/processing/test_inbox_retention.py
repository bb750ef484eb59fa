"""Retention of a shared inbox: ``inbox prune`` lets go of the files and claims of batches in the books, and
only those; ``inbox status`` says what the inbox holds and who is importing what."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

from sqlalchemy import Engine, func, select, update
from support.backoffice import processing_home, run_cli, world
from test_inbox import _day

from processing.inbox import Inbox
from processing.inbox_retention import inbox_status, prune_inbox
from processing.schema.processing import batches, inbox_claims

OLD = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def _cli(home: Path, url: str, *args: str) -> tuple[int, str, str]:
    proc = run_cli(home, url, *args)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _age(engine: Engine, inbox: Path, names: list[str]) -> None:
    """As if the batches of ``names`` had been imported in 2020: their rows, claims and files' times."""
    with engine.begin() as conn:
        conn.execute(update(batches).where(batches.c.file_name.in_(names)).values(imported_at=OLD))
        conn.execute(update(inbox_claims).where(inbox_claims.c.file_name.in_(names))
                     .values(claimed_at=OLD, done_at=OLD))
    for name in names:
        os.utime(inbox / "done" / name, (OLD.timestamp(), OLD.timestamp()))


def test_prune_removes_only_what_the_books_hold_and_is_older_than_kept(tmp_path: Path) -> None:
    """The CLI as an operator runs it from cron: the dry run says and removes nothing; the prune removes the old
    batches' files and finished claims, keeps the new ones, a file put in done/ by hand, and rejected/; a
    pruned file delivered again is still found a duplicate (``batches`` knows its digest)."""
    with world("sqlite", tmp_path) as w:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        _day(w, inbox, terminals=2, batches_each=2)
        (inbox / "garbage.spb").write_bytes(b"not a batch")
        home = processing_home(tmp_path / "home", w.keys)
        code, _, err = _cli(home, w.url, "process", "--inbox", str(inbox))
        assert code == 1, err
        keep = tmp_path / "kept-copy.spb"
        shutil.copy(inbox / "done" / "t001-0001.spb", keep)
        old = ["t001-0001.spb", "t001-0002.spb"]
        _age(w.engine, inbox, old)
        by_hand = inbox / "done" / "notes.txt"
        by_hand.write_text("the operator's notes")
        os.utime(by_hand, (OLD.timestamp(), OLD.timestamp()))
        (inbox / "rejected" / "garbage.spb").touch()
        os.utime(inbox / "rejected" / "garbage.spb", (OLD.timestamp(), OLD.timestamp()))

        code, out, err = _cli(home, w.url, "inbox", "status", str(inbox))
        assert code == 0, err
        status = json.loads(out)
        assert (status["waiting"], status["done"], status["rejected"], status["open_claims"]) == (0, 5, 1, [])
        assert status["finished_claims"] == {"accepted": 4, "rejected": 1}

        code, out, err = _cli(home, w.url, "inbox", "prune", str(inbox), "--keep-days", "30", "--dry-run")
        assert code == 0, err
        dry = json.loads(out)
        assert (dry["removed_files"], dry["removed_claims"], dry["dry_run"]) == (2, 2, True)
        assert len(list((inbox / "done").iterdir())) == 5

        old_bytes = sum(os.path.getsize(inbox / "done" / name) for name in old)
        code, out, err = _cli(home, w.url, "inbox", "prune", str(inbox), "--keep-days", "30")
        assert code == 0, err
        done = json.loads(out)
        assert sorted(Path(p).name for p in done["paths"]) == old
        assert done["removed_claims"] == 2 and done["removed_bytes"] == old_bytes
        assert done["not_batches"] == ["notes.txt"] and done["kept"] == {"newer": 2, "not an accepted batch": 1}
        assert sorted(p.name for p in (inbox / "done").iterdir()) == ["notes.txt", "t002-0001.spb", "t002-0002.spb"]
        assert [p.name for p in (inbox / "rejected").iterdir()] == ["garbage.spb"]
        with w.engine.connect() as conn:
            assert sorted(conn.execute(select(inbox_claims.c.file_name)).scalars()) == [
                "garbage.spb", "t002-0001.spb", "t002-0002.spb"]
            assert conn.execute(select(func.count()).select_from(batches)
                                .where(batches.c.status == "accepted")).scalar_one() == 4

        shutil.copy(keep, inbox / "t001-0001.spb")  # the terminal sends an old batch again
        code, out, err = _cli(home, w.url, "process", "--inbox", str(inbox))
        assert code == 0, err
        assert [b["status"] for b in json.loads(out)["batches"]] == ["duplicate"]

        for args, want, words in ((["inbox", "prune", str(inbox), "--keep-days", "0"], 2, "--keep-days"),
                                  (["inbox", "prune", str(inbox)], 2, "--keep-days"),
                                  (["inbox", "status", str(tmp_path / "nowhere")], 6, "no inbox folder")):
            code, _, err = _cli(home, w.url, *args)
            assert code == want and words in err and "Traceback" not in err, err


def test_an_open_claim_is_never_pruned_and_status_says_whose_lease_is_over(tmp_path: Path) -> None:
    """A claim an importer holds (or one that died holding it) stays, however old: the next importer takes the file
    over; status names the claimant and whether its lease is over."""
    with world("sqlite", tmp_path) as w:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        _day(w, inbox, terminals=1, batches_each=1)
        clock = [OLD.timestamp()]
        dead = Inbox(w.engine, inbox, claimant="lost-host:1", now=lambda: clock[0])
        assert dead.claim(dead.waiting()[0]) is not None
        clock[0] += 365 * 86_400
        result = prune_inbox(dead, 1)
        assert result.removed_claims == 0 and not result.removed_files
        status = inbox_status(dead)
        assert status.waiting == 1 and [(c.claimed_by, c.lease_over) for c in status.open_claims] == [
            ("lost-host:1", True)]
        fresh = Inbox(w.engine, inbox, claimant="lost-host:1", now=lambda: OLD.timestamp() + 60)
        assert [c.lease_over for c in inbox_status(fresh).open_claims] == [False]
