"""The hotlist terminals enforce: blocked cards and cards caught cloned, signed by the issuer.

Sources: the registry (``cards block``/``cards replace`` set ``blocked_at``) and the
clone anomalies processing found. Each export gets the next sequence number, so a
terminal can refuse to go back to an older list (purse.hotlist).
"""

from __future__ import annotations

import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, func, insert, select

from processing.reconcile import hotlist_times
from processing.schema.processing import hotlist_exports
from purse.files import write_atomic
from purse.hotlist import Hotlist


def build_hotlist(conn: Connection, issuer_id: int, now: int | None = None) -> Hotlist:
    created = int(now if now is not None else time.time())
    sequence = int(conn.execute(select(func.coalesce(func.max(hotlist_exports.c.sequence), 0))).scalar_one()) + 1
    return Hotlist(issuer_id, created, sequence, hotlist_times(conn))


def export_hotlist(conn: Connection, key: Ed25519PrivateKey, issuer_id: int, out: Path,
                   now: int | None = None) -> Hotlist:
    """Sign and write the hotlist; the export is recorded so the next one numbers higher."""
    hotlist = build_hotlist(conn, issuer_id, now)
    data = hotlist.sign(key)
    write_atomic(out, data)
    conn.execute(insert(hotlist_exports).values(sequence=hotlist.sequence, created=hotlist.created,
                                                cards=len(hotlist.cards), path=str(out)))
    return hotlist
