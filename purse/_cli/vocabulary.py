"""The one vocabulary of ``--json`` output (docs/cli.md, "JSON"): key names and how time is written.

Commands build their results from library objects and database rows, whose field names
grew up separately (a registry row's ``number``, a receipt's ``card_number``; ``out``,
``file``, ``image`` for paths; epoch seconds in records, naive datetimes from SQLite). A
script should not have to know which. ``to_json`` renames those keys and writes every time
as ISO 8601 in UTC with its offset, in one place, for every command's JSON; the text a
person reads is made from the same data before this step.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

# Old name -> the vocabulary's name.
RENAMED = {
    "number": "card_number",  # registry rows
    "file": "path", "out": "path", "image": "path", "where": "path", "keystore": "path",  # files
}
# Keys holding a time: epoch seconds (records, headers, card files) or datetimes (database rows).
TIME_KEYS = frozenset({"time", "created", "last_visit", "issued_at", "blocked_at", "imported_at", "detected_at",
                       "recorded_at", "settled_at", "created_at", "credited_at", "paid_at"})
# Keys holding a day: written as an ISO date (YYYY-MM-DD); a card's expiry is the last day it is valid.
DAY_KEYS = frozenset({"expiry"})


def iso_time(value: int | dt.datetime) -> str:
    """ISO 8601 with an offset, in UTC; a naive datetime is UTC (how the database stores every time)."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).isoformat()
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat()


def _value(key: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, dt.datetime | int):
        return to_json(value)
    if key in TIME_KEYS:
        return None if value == 0 else iso_time(value)  # 0: never (a card never used)
    if key in DAY_KEYS:
        moment = value if isinstance(value, dt.datetime) else dt.datetime.fromtimestamp(value, dt.UTC)
        return None if value == 0 else moment.date().isoformat()
    return value


def to_json(data: Any) -> Any:
    """``data`` in the vocabulary: keys renamed, times in ISO 8601; anything else as it is."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = RENAMED.get(key, key) if isinstance(key, str) else key
            if name in out:  # two spellings of one thing in one result: the command must say which
                raise AssertionError(f"JSON key {name!r} given twice ({key!r})")
            out[name] = _value(name if isinstance(name, str) else "", value)
        return out
    if isinstance(data, list | tuple):
        return [to_json(item) for item in data]
    if isinstance(data, dt.datetime):
        return iso_time(data)
    return data
