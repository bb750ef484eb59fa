"""What a shared inbox holds, and letting go of what it no longer needs: ``smartpurse inbox status|prune``.

An inbox grows by a day's batches every day: each imported file is moved to ``done/`` and its claim stays
in ``inbox_claims`` as its log. Neither is needed once the batch is in the books: ``batches`` keeps every
imported file's SHA-256 (a file delivered again is found a duplicate by it, claim or no claim), and
``records`` every record byte for byte. ``prune`` removes the files of ``done/`` whose batch was imported
more than the days kept ago, and the claims finished before then. It deletes a file only when its content
is an accepted batch's (its digest is in ``batches``): a file put there by hand, or a copy edited since, is
kept and said. ``rejected/`` is never pruned: those files wait for a repair, and ``check`` counts them.
Open claims are never touched: an importer holds them, or will take them over.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, select

from processing.importer import file_digest
from processing.inbox import DONE, REJECTED, Inbox, InboxError
from processing.schema import stored_utc
from processing.schema.processing import batches, inbox_claims

_LOOKUP = 500  # digests per query


@dataclass
class OpenClaim:
    file_name: str
    claimed_by: str
    claimed_at: dt.datetime
    lease_over: bool  # another importer may take it over now


@dataclass
class InboxStatus:
    folder: str
    waiting: int
    done: int
    rejected: int
    open_claims: list[OpenClaim]
    finished_claims: dict[str, int]  # outcome -> claims

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.folder, "waiting": self.waiting, "done": self.done, "rejected": self.rejected,
                "open_claims": [{"file_name": c.file_name, "claimed_by": c.claimed_by,
                                 "claimed_at": c.claimed_at.isoformat(), "lease_over": c.lease_over}
                                for c in self.open_claims],
                "finished_claims": self.finished_claims}


def inbox_status(inbox: Inbox) -> InboxStatus:
    """The files waiting, done and rejected, the claims importers hold now, and the finished ones by outcome."""
    c = inbox_claims.c
    lease_end = dt.datetime.fromtimestamp(inbox.now() - inbox.lease_seconds, dt.UTC)
    with inbox.engine.connect() as conn:
        open_rows = conn.execute(select(c.file_name, c.claimed_by, c.claimed_at).where(c.done_at.is_(None))
                                 .order_by(c.claimed_at)).all()
        finished = {str(o): int(n) for o, n in conn.execute(
            select(c.outcome, func.count()).where(c.done_at.is_not(None)).group_by(c.outcome))}
    claims = [OpenClaim(name, who, stored_utc(at), stored_utc(at) < lease_end) for name, who, at in open_rows]
    return InboxStatus(str(inbox.folder), len(inbox.waiting()), len(_files(inbox.folder / DONE)),
                       len(_files(inbox.folder / REJECTED)), claims, finished)


@dataclass
class PruneResult:
    keep_days: int
    dry_run: bool
    removed_files: list[str] = field(default_factory=list)
    removed_bytes: int = 0
    removed_claims: int = 0
    kept: Counter[str] = field(default_factory=Counter)  # why -> files of done/ kept
    not_batches: list[str] = field(default_factory=list)  # files of done/ whose content no batch has

    def as_dict(self) -> dict[str, Any]:
        return {"keep_days": self.keep_days, "dry_run": self.dry_run, "removed_files": len(self.removed_files),
                "removed_bytes": self.removed_bytes, "removed_claims": self.removed_claims,
                "kept": dict(sorted(self.kept.items())), "not_batches": self.not_batches,
                "paths": self.removed_files}


def prune_inbox(inbox: Inbox, keep_days: int, *, dry_run: bool = False) -> PruneResult:
    """Remove the files of ``done/`` whose batch was imported more than ``keep_days`` days ago, and the claims
    finished before then; ``dry_run`` says what would go and removes nothing.

    A file is looked at by its content only when it arrived before the cut (its modification time, which the
    move to ``done/`` keeps): the files kept are not read again every day."""
    if keep_days < 1:
        raise InboxError("--keep-days must be at least 1: a batch imported today stays")
    cut = dt.datetime.fromtimestamp(inbox.now() - keep_days * 86_400, dt.UTC)
    result = PruneResult(keep_days, dry_run)
    candidates: list[tuple[Path, str, int]] = []
    for path in _files(inbox.folder / DONE):
        try:
            info = path.stat()
            if info.st_mtime >= cut.timestamp():
                result.kept["newer"] += 1
                continue
            candidates.append((path, file_digest(path), info.st_size))
        except OSError:
            continue  # removed meanwhile (another prune)
    imported = _imported_at(inbox.engine, [digest for _, digest, _ in candidates])
    for path, digest, size in candidates:
        at = imported.get(digest)
        if at is None:
            result.not_batches.append(path.name)
            result.kept["not an accepted batch"] += 1
        elif at >= cut:
            result.kept["newer"] += 1
        else:
            if not dry_run:
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as e:
                    raise InboxError(f"cannot remove {path}: {e.strerror}") from None
            result.removed_files.append(str(path))
            result.removed_bytes += size
    c = inbox_claims.c
    old = c.done_at.is_not(None) & (c.done_at < cut)
    with inbox.engine.begin() as conn:
        if dry_run:
            result.removed_claims = int(conn.execute(select(func.count()).where(old)).scalar_one())
        else:
            result.removed_claims = int(conn.execute(delete(inbox_claims).where(old)).rowcount)
    return result


def _imported_at(engine: Engine, digests: Sequence[str]) -> dict[str, dt.datetime]:
    """digest -> when its batch was imported, for the digests that are accepted batches."""
    b = batches.c
    out: dict[str, dt.datetime] = {}
    with engine.connect() as conn:
        for i in range(0, len(digests), _LOOKUP):
            part = sorted(set(digests[i : i + _LOOKUP]))
            for digest, at in conn.execute(select(b.sha256, b.imported_at)
                                           .where(b.sha256.in_(part), b.status == "accepted")):
                out[digest] = stored_utc(at)
    return out


def _files(folder: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(folder) if e.is_file())
    except FileNotFoundError:
        return []
    except OSError as e:
        raise InboxError(f"cannot read {folder}: {e.strerror}") from None

