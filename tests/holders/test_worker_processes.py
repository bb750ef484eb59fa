"""``smartpurse notify run`` as separate processes: two at once, and one killed in the middle of an SMTP
transaction. Each holder gets each message exactly once, and every message ends in a final state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select
from support.backoffice import NOW, World
from support.holders import SMTP_PASSWORD, add_holder, channels, notify_home

from processing.schema.holders import Channel, messages

REPO = Path(__file__).resolve().parents[2]
CARDS = 20


def _loaded_holders(w: World) -> None:
    """Twenty holders, each consenting to e-mail only (no phone), each card loaded once at the desk."""
    for i in range(1, CARDS + 1):
        card = w.card(i, load=10_000 + i, when=NOW + i)
        w.register_card(card)
        add_holder(w.engine, card.number, name=f"Holder {i}", email=f"h{i}@example.org", phone=None,
                   consent=(Channel.EMAIL,))
    w.ingest_loads()


def _worker(home: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SMARTPURSE_HOME": str(home), "SMARTPURSE_SMTP_PASSWORD": SMTP_PASSWORD}
    return subprocess.Popen([sys.executable, str(REPO / "cli.py"), "--db", url, "notify", "run", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _email_states(w: World) -> dict[str, int]:
    m = messages.c
    with w.engine.connect() as conn:
        return {s: int(n) for s, n in conn.execute(select(m.state, func.count()).where(m.channel == "email")
                                                   .group_by(m.state))}


def test_two_workers_at_once_send_every_message_once(processing_db: World, tmp_path: Path) -> None:
    w = processing_db
    _loaded_holders(w)
    with channels(tmp_path) as (smtp, gateway):
        home = notify_home(tmp_path / "home", smtp, gateway)
        workers = [_worker(home, w.url), _worker(home, w.url)]
        outcomes = [p.communicate(timeout=120) for p in workers]
        assert [p.returncode for p in workers] == [0, 0], outcomes
        received = smtp.wait_for(CARDS)
    assert sorted(str(m["To"]) for m in received) == sorted(f"h{i}@example.org" for i in range(1, CARDS + 1))
    assert _email_states(w) == {"sent": CARDS}


def test_a_worker_killed_while_the_server_holds_its_message_never_sends_it_twice(processing_db: World,
                                                                                 tmp_path: Path) -> None:
    w = processing_db
    _loaded_holders(w)
    with channels(tmp_path) as (smtp, gateway):
        smtp.stall = threading.Event()  # the server takes the first message's DATA and does not answer
        home = notify_home(tmp_path / "home", smtp, gateway)
        killed = _worker(home, w.url, "--lease", "2")
        deadline = time.monotonic() + 30
        while smtp.in_data == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert smtp.in_data == 1, "the worker never reached the SMTP server"
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=30)
        assert _email_states(w) == {"sending": 1, "queued": CARDS - 1}
        smtp.stall.set()
        time.sleep(2.5)  # the dead worker's lease runs out
        again = _worker(home, w.url)
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert "sent 19" in out and "interrupted 1" in out
        received = [str(m["To"]) for m in smtp.wait_for(CARDS - 1)]
    assert _email_states(w) == {"sent": CARDS - 1, "interrupted": 1}
    m = messages.c
    with w.engine.connect() as conn:
        lost_in_flight = conn.execute(select(m.recipient).where(m.state == "interrupted")).scalar_one()
    # Everyone else got theirs once; the message in flight when the worker died went at most once (this
    # server dropped it with the connection), and is said to be interrupted, never sent a second time.
    assert len(received) == len(set(received))
    assert set(received) | {lost_in_flight} == {f"h{i}@example.org" for i in range(1, CARDS + 1)}
