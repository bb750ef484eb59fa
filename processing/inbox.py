"""A folder of batch files that several importers share: ``smartpurse process --inbox DIR``.

Terminals (or the collector that fetches their batches) drop files into the folder; any number of
importers, on this host or others mounting the same folder, take them. A file is *claimed* in the
database before it is imported (``inbox_claims``, keyed by the file's SHA-256): the claim is one
``INSERT … ON CONFLICT`` statement, so of two importers reaching for the same file exactly one gets it,
and the other goes on to the next. After the import the file moves to ``done/`` (accepted or already
imported) or ``rejected/`` (its reason is in ``batches`` and a copy in the quarantine folder), and its
claim records the outcome.

An importer that dies (killed, its host lost) leaves its batch's transaction rolled back and its claim
open; when the claim's lease ends another importer takes the file over. Even if the first one were still
alive, the batch would be posted once: the file's own lock and the ``records`` keys see to that
(processing.locks).

Files whose names start with a dot or end in ``.part`` are not taken: a collector writes a file under such
a name and renames it when it is complete, so no importer reads half a batch.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, delete, update
from sqlalchemy.dialects import postgresql, sqlite

from processing.importer import ImportResult, ImportStatus, file_digest
from processing.schema.processing import inbox_claims
from purse.errors import UserError

DONE, REJECTED = "done", "rejected"  # where a file goes once imported
DEFAULT_LEASE_SECONDS = 600


def this_importer() -> str:
    """Who claims: the host and process, as the claims table and its log show it."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Inbox:
    """One shared folder of batch files and the claims on them."""

    engine: Engine
    folder: Path
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    claimant: str = field(default_factory=this_importer)
    now: Callable[[], float] = time.time

    def waiting(self) -> list[Path]:
        """The files ready to import, by name (a terminal's batches are named in order by most collectors)."""
        try:
            entries = list(os.scandir(self.folder))
        except OSError as e:
            raise InboxError(f"cannot read the inbox {self.folder}: {e.strerror}") from None
        return sorted(Path(e.path) for e in entries if e.is_file() and not e.name.startswith(".")
                      and not e.name.endswith(".part"))

    def claim(self, path: Path) -> str | None:
        """The file's digest if this importer now holds it (or held it already: a copy of a file it is importing);
        None if another does, or it is gone already."""
        return self.claim_all([path]).get(path)

    def claim_all(self, paths: Sequence[Path]) -> dict[Path, str]:
        """``claim`` for several files in one statement: those this importer now holds, with their digests.

        An importer claims a group's files before it imports them; one statement and commit per file cost
        4-5 ms on PostgreSQL, a tenth of a 400-record batch's import. If a file claimed turns out to have been
        moved away meanwhile (its importer finishing it), the claims are undone and taken one by one."""
        digests: dict[Path, str] = {}
        for path in paths:
            try:
                digests[path] = file_digest(path)
            except OSError:
                continue  # another importer moved it away between the listing and now
        if not digests:
            return {}
        names: dict[str, str] = {}
        for path, digest in digests.items():  # a copy of a file is claimed with it (found a duplicate in the group),
            names[digest] = path.name[:255]  # under the last name, as one claim after the other would leave it
        now = self._stamp(self.now())
        c = inbox_claims.c
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(inbox_claims).values([
            {"sha256": digest, "file_name": name, "claimed_by": self.claimant, "claimed_at": now}
            for digest, name in sorted(names.items())])
        stmt = stmt.on_conflict_do_update(
            index_elements=[c.sha256],
            set_={"file_name": stmt.excluded.file_name, "claimed_by": stmt.excluded.claimed_by,
                  "claimed_at": stmt.excluded.claimed_at, "done_at": None, "outcome": None},
            # a finished file dropped again is a new delivery; an open claim past its lease, a dead importer's;
            # a copy of a file this importer holds already comes in the same group, to be found a duplicate
            where=c.done_at.is_not(None) | (c.claimed_at < self._stamp(self.now() - self.lease_seconds))
            | (c.claimed_by == self.claimant))
        with self.engine.connect() as conn, conn.begin() as claiming:
            won = set(conn.execute(stmt.returning(c.sha256)).scalars())
            claimed = {path: digest for path, digest in digests.items() if digest in won}
            if all(self._still_there(path, digest) for path, digest in claimed.items()):
                return claimed
            # one was read just before its importer moved it away and closed the claim this took over: that
            # claim is the file's log, and stays as it was
            claiming.rollback()
        if len(digests) == 1:
            return {}
        return {path: digest for one in digests for path, digest in self.claim_all([one]).items()}

    @staticmethod
    def _still_there(path: Path, digest: str) -> bool:
        """Whether the file claimed is still in the inbox, with the content claimed. Looked at while the claim's
        row is held: an importer moves a file away before it closes its claim, so a file found here is a new
        delivery, not one being finished."""
        try:
            return file_digest(path) == digest
        except OSError:
            return False

    def finish(self, path: Path, digest: str, result: ImportResult) -> Path:
        """Move the imported file out of the way and close its claim; where it went."""
        return self.finish_all([(path, digest, result)])[0]

    def finish_all(self, imported: Sequence[tuple[Path, str, ImportResult]]) -> list[Path]:
        """``finish`` for the files one transaction imported (path, digest, result): each moved, then their
        claims closed in one statement per outcome, where one statement and commit a file cost 2 ms on
        PostgreSQL, 5 % of a day's import by the inbox. If a file cannot be moved, the claims of those moved
        before it are closed all the same, and the error is raised."""
        moved: list[tuple[Path, str, ImportResult]] = []
        try:
            for path, digest, result in imported:
                moved.append((self._move(path, digest, result), digest, result))
        finally:
            self._close_claims(moved)
        return [target for target, _, _ in moved]

    def _move(self, path: Path, digest: str, result: ImportResult) -> Path:
        target_dir = self.folder / (REJECTED if result.status == ImportStatus.REJECTED else DONE)
        target_dir.mkdir(exist_ok=True)
        target = target_dir / path.name
        if target.exists():  # the same name delivered before with other content: keep both
            target = target_dir / f"{digest[:16]}-{path.name}"
        try:
            os.replace(path, target)
        except OSError as e:
            raise InboxError(f"cannot move {path} to {target_dir}: {e.strerror}") from None
        return target

    def _close_claims(self, moved: Sequence[tuple[Path, str, ImportResult]]) -> None:
        by_outcome: dict[str, list[str]] = {}
        for _, digest, result in moved:
            by_outcome.setdefault(str(result.status), []).append(digest)
        if not by_outcome:
            return
        c = inbox_claims.c
        done_at = self._stamp(self.now())
        with self.engine.begin() as conn:
            for outcome, digests in sorted(by_outcome.items()):
                conn.execute(update(inbox_claims).where(c.sha256.in_(digests), c.claimed_by == self.claimant)
                             .values(done_at=done_at, outcome=outcome))

    def release(self, digest: str) -> None:
        """Give up a claim without importing (the run stops): another importer may take the file at once."""
        c = inbox_claims.c
        with self.engine.begin() as conn:
            conn.execute(delete(inbox_claims).where(c.sha256 == digest, c.claimed_by == self.claimant,
                                                    c.done_at.is_(None)))

    @staticmethod
    def _stamp(unix: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(unix, dt.UTC)


class InboxError(UserError):
    """The inbox folder cannot be read or written (exit 6, as for any file that cannot be used)."""
