"""``cards show`` reads processing's shadow balance: what processing knows is on a card."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.backoffice import NOW, World

from processing.shadow import shadow_balance


def test_shadow_balance_follows_the_posted_records_and_shows_gaps(processing_db: World, tmp_path: Path) -> None:
    w = processing_db
    w.merchant(42)
    first, second = w.terminal(7, 42), w.terminal(8, 42)
    card = w.card(1, load=5_000)
    assert shadow_balance(w.engine, card.number) is None  # nothing posted yet
    w.ingest_loads()
    assert (shadow_balance(w.engine, card.number) or pytest.fail("no shadow")).balance == 5_000
    first.purchase(card, 1_200, NOW + 10)  # counter 2: in terminal 7's batch, imported later
    second.purchase(card, 300, NOW + 20)  # counter 3
    assert w.process(second.close(tmp_path / "t8.spb")).status == "accepted"
    shadow = shadow_balance(w.engine, card.number)
    assert shadow.balance == 4_700
    assert shadow.gap_open and shadow.complete_to_counter == 1 and shadow.highest_counter == 3
    assert w.process(first.close(tmp_path / "t7.spb")).status == "accepted"
    shadow = shadow_balance(w.engine, card.number)
    assert shadow.balance == 3_500 == card.balance
    assert not shadow.gap_open and shadow.complete_to_counter == 3
