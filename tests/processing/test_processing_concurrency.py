"""Two ``smartpurse process`` processes importing overlapping batches into PostgreSQL at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.backoffice import NOW, processing_home, run_cli, world

from processing.check import run_check
from processing.schema.processing import records


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("parallel_from", ["50000", "1"], ids=["in-line", "worker"])
def test_two_processes_overlapping_batches_post_every_record_once(tmp_path: Path, parallel_from: str) -> None:
    """In line, and the way large batches go (a worker verifies and walks while the importer stores)."""
    with world("postgresql", tmp_path) as w:
        w.merchant(42)
        terms = [w.terminal(t, 42) for t in (7, 8, 9)]
        cards = [w.card(i, load=1_000_000) for i in range(200)]
        files_a, files_b = [], []
        for t in terms:
            for i in range(3_000):
                t.purchase(cards[(i * 7 + t.terminal_id) % len(cards)], 1 + i % 50, NOW + i)
            saved = (list(t.entries), t._mac, t.seq)
            files_a.append(t.close(tmp_path / f"{t.terminal_id}-1.spb"))
            # the same log restored from a backup, more sales, batch 1 exported again: overlaps files_a
            t.entries, t._mac, t.seq, t.batch_seq, t.next_index, t.prev_mac = saved[0], saved[1], saved[2], 0, 1, \
                bytes(8)
            for i in range(500):
                t.purchase(cards[i % len(cards)], 3, NOW + 10_000 + i)
            files_b.append(t.close(tmp_path / f"{t.terminal_id}-1-again.spb"))
        expected = sum(c.counter for c in cards)  # every record each card made, loads included
        home = processing_home(tmp_path / "home", w.keys)
        a = run_cli(home, w.url, "process", "--parallel-from", parallel_from, *map(str, files_a))
        b = run_cli(home, w.url, "process", "--parallel-from", parallel_from, *map(str, reversed(files_b)))
        out_a, err_a = a.communicate(timeout=300)
        out_b, err_b = b.communicate(timeout=300)
        assert a.returncode == 0 and b.returncode == 0, (err_a, err_b)
        sa, sb = json.loads(out_a), json.loads(out_b)
        assert sa["accepted"] + sb["accepted"] == 3 * 3_500
        assert sa["accepted"] + sa["duplicates"] == 9_000 and sb["accepted"] + sb["duplicates"] == 10_500
        with w.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(records)).scalar_one() == expected
            rep = run_check(conn)
            assert rep.ok, rep.failures
            assert rep.figures["card_float"] == sum(c.balance for c in cards)


def _descendants(pid: int) -> set[int]:
    """Every process whose parent chain leads to ``pid`` (from /proc), while ``pid`` lives."""
    children: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat_file.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


@pytest.mark.slow
def test_a_killed_process_command_leaves_no_helper_running(tmp_path: Path) -> None:
    """SIGKILL of ``smartpurse process`` mid-import: the verifying worker, the forkserver and the resource
    tracker die with it, and nothing holds its output open (whoever reads it sees the end at once)."""
    import signal
    import time

    with world("sqlite", tmp_path) as w:
        w.merchant(42)
        terminal = w.terminal(7, 42)
        cards = [w.card(i, load=10_000_000) for i in range(500)]
        for i in range(300_000):
            terminal.purchase(cards[i % len(cards)], 1, NOW + i)
        batch = terminal.close(tmp_path / "big.spb")
        home = processing_home(tmp_path / "home", w.keys)
        proc = run_cli(home, w.url, "process", "--parallel-from", "1", str(batch))
        deadline = time.monotonic() + 60
        helpers = _descendants(proc.pid)
        while time.monotonic() < deadline and len(helpers) < 3:  # tracker, forkserver, worker
            time.sleep(0.02)
            helpers = _descendants(proc.pid)
        assert len(helpers) >= 3, "the worker must be running when the command is killed"
        proc.send_signal(signal.SIGKILL)  # at once: the snapshot above is the helpers that must die with it
        proc.communicate(timeout=20)  # the end of its output comes at once: no helper holds it open
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_running(pid) for pid in helpers):
            time.sleep(0.05)
        assert [pid for pid in helpers if _running(pid)] == []
