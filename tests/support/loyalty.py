"""The loyalty test world: programs built from dicts, and a shop with a real card and terminal.

A ``Shop`` is one virtual card and one POS terminal of the test issuer (purse_env) with a
clock the test moves, so every purchase goes through the real applet, session and DEBIT.
"""

from __future__ import annotations

from typing import Any

from purse.loyalty import Program, ProgramPolicy
from purse.loyalty.program import program_from_dict
from purse.records import PointsSlot, TransactionRecord
from purse.terminal import Receipt, Terminal
from purse.transport.virtual import VirtualTransport
from support import cards as purse_env

DAY = 86_400
NOW = purse_env.NOW


def make_program(program_id: int = 17, **sections: Any) -> Program:
    """A program with only the given sections (``earn={...}``, ``prize={...}``, ...)."""
    return program_from_dict({"program": {"id": program_id, "name": f"test {program_id}"}, **sections})


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Shop:
    """A card with ``balance`` and a terminal running ``program`` (``None``: no program)."""

    def __init__(self, issuer: purse_env.Issuer, program: Program | None, *, balance: int = 1_000_000,
                 terminal_id: int = 7, transport: VirtualTransport | None = None) -> None:
        self.issuer = issuer
        self.clock = Clock()
        self.card = transport or issuer.card(balance=balance)
        self.policy = ProgramPolicy(program) if program else None
        self.terminal: Terminal = issuer.terminal(self.card, terminal_id=terminal_id, clock=self.clock)

    def buy(self, price: int, *, redeem: int = 0, pin: str | None = purse_env.PIN, after_days: float = 0) -> Receipt:
        self.clock.now += int(after_days * DAY)
        return self.terminal.debit(price, points=self.policy, redeem_points=redeem, pin=pin if redeem else None)

    def cancel(self) -> Receipt:
        return self.terminal.cancel_last()

    def slot(self) -> PointsSlot:
        assert self.policy is not None
        return self.terminal.read_card(self.policy.program_id).points

    def balance(self) -> int:
        return self.terminal.read_card().balance

    def records(self) -> list[TransactionRecord]:
        """Everything this terminal logged for the card (the card's own log is cyclic)."""
        return [record for _, record, _ in self.terminal.log.records()]
