"""Loyalty programs: the signed program file, the rules engine, the processing replay.

A program is a file the issuer writes and signs (``program``, ``signed``); a terminal
runs it through ``ProgramPolicy`` at each purchase (``rules``); processing replays a
card's records through the same rules to flag points mismatches (``recompute``).
See docs/loyalty.md.
"""

from __future__ import annotations

from purse.loyalty.program import (
    Program,
    ProgramError,
    example_program_bytes,
    parse_program_bytes,
    parse_program_text,
)
from purse.loyalty.recompute import PointsDiscrepancy, Replay, recompute_points, replay_points
from purse.loyalty.rules import ProgramPolicy, RedemptionRefused, earn
from purse.loyalty.signed import KIND, load_signed_program, read_program_file, sign_program, verify_program

__all__ = [
    "KIND", "PointsDiscrepancy", "Program", "ProgramError", "ProgramPolicy", "RedemptionRefused", "earn",
    "example_program_bytes",
    "load_signed_program", "parse_program_bytes", "parse_program_text", "read_program_file", "recompute_points",
    "Replay", "replay_points", "sign_program", "verify_program",
]
