"""The portal's security log: every login, every refusal and why, every action, with the client address.

Written to ``portal_log`` (``smartpurse portal log`` reads it) and to the ``smartpurse.portal`` logger, a
refusal at WARNING, so an operator's log shipping sees attacks as they happen. Identifiers are logged
masked (``card …0011``), never whole, and codes never.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, insert

from processing.schema.portal import portal_log

__all__ = ["record", "REFUSALS"]

log = logging.getLogger("smartpurse.portal")
# Events that are a refusal: logged as warnings.
REFUSALS = frozenset({"login-refused", "code-refused", "csrf-refused", "not-theirs", "bad-input", "not-delivered"})


def record(conn: Connection, now: int, event: str, client: str, *, holder_id: int | None = None,
           subject: str | None = None, detail: str = "") -> None:
    conn.execute(insert(portal_log).values(at=now, event=event, client=client[:64], holder_id=holder_id,
                                           subject=subject, detail=detail[:300]))
    log.log(logging.WARNING if event in REFUSALS else logging.INFO, "%s from %s%s%s", event, client,
            f" holder {holder_id}" if holder_id is not None else "", f": {detail}" if detail else "")
