"""The loyalty programs processing replays points with: signed by the issuer, verified on loading.

Processing recomputes every card's points from its records (docs/processing.md) and
must use exactly the rules the terminals ran, so it reads the same signed files and
refuses one the issuer did not sign, as a terminal does.
"""

from __future__ import annotations

from pathlib import Path

from purse.errors import UserError
from purse.loyalty import Program, load_signed_program


def load_verified_programs(folder: Path, issuer_public_key: bytes | None) -> dict[int, Program]:
    """Every ``*.signed`` program in ``folder`` by program id; no folder means chain checks only.

    Raises ``SignatureError`` for a file the issuer did not sign, and ``UserError`` when
    there are programs but no issuer key to check them with, or two files for one program.
    """
    if not folder.is_dir():
        return {}
    paths = sorted(folder.glob("*.signed"))
    if paths and issuer_public_key is None:
        raise UserError(f"{folder} holds signed programs, but no issuer public key was given to verify them")
    programs: dict[int, Program] = {}
    for path in paths:
        assert issuer_public_key is not None
        _, program = load_signed_program(path, issuer_public_key)
        if program.program_id in programs:
            raise UserError(f"{path}: a second file for program {program.program_id} in {folder}")
        programs[program.program_id] = program
    return programs
