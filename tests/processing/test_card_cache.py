"""Importers with separate engines (and separate card-state caches), interleaved, keep chains exact.

The cache's own guard (the highest record id) is a second line: a walk that finds the database
ahead of its cached state re-reads it, so results stay exact even without the guard.
"""

from __future__ import annotations

from pathlib import Path

from support.backoffice import NOW, World

from processing.check import run_check
from processing.db import open_database
from processing.importer import import_batch
from processing.shadow import shadow_balance


def test_imports_from_two_engines_interleaved_keep_every_chain_exact(import_world: World, tmp_path: Path) -> None:
    """A imports, then B (its own engine, its own cache), then A again: A must see B's records."""
    w = import_world
    w.merchant(42)
    terminal = w.terminal(7, 42)
    cards = [w.card(i, load=10_000) for i in range(4)]
    w.ingest_loads()
    other = open_database(w.url)
    try:
        for step, engine in enumerate((w.engine, other, w.engine, other, w.engine)):
            for i, card in enumerate(cards):
                terminal.purchase(card, 100 + 10 * step + i, NOW + 100 * step + i)
            result = import_batch(engine, terminal.close(tmp_path / f"b{step}.spb"), w.keys, w.options())
            assert result.status == "accepted", result.reason
            assert result.anomalies == [], result.anomalies
    finally:
        other.dispose()
    for card in cards:
        shadow = shadow_balance(w.engine, card.number)
        assert shadow is not None
        assert shadow.balance == card.balance
        assert shadow.complete_to_counter == 6 and not shadow.gap_open
    with w.engine.connect() as conn:
        report = run_check(conn)
    assert report.ok, report.failures
