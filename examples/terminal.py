"""A POS terminal in about 30 lines: read a card, sell 12.50 with loyalty points, print the receipt.

usage: .venv/bin/python examples/terminal.py HOME CARD    (CARD: a card image file, or pcsc:READER)
"""
import os
import sys
from pathlib import Path

try:
    from purse.errors import SmartpurseError
    from purse.loyalty import ProgramPolicy, load_signed_program
    from purse.money import format_amount as money
    from purse.rolekeys import load_role_keys
    from purse.terminal import Terminal
    from purse.terminal_log import TerminalLog
except ModuleNotFoundError as missing:  # the system python, not the one smartpurse is installed in
    sys.exit(f"{missing.name} is not installed for {sys.executable}: run this with the venv's python "
             "(.venv/bin/python) or `pip install smartpurse` first")


def sell(home: Path, card: str) -> None:
    keys = load_role_keys(home / "keys/pos-1.key", os.environ.get("SMARTPURSE_PASSPHRASE", "demo"))  # DEBIT, log
    _, program = load_signed_program(home / "terminals/1.program.signed", keys.issuer_public_key)
    if card.startswith("pcsc:"):
        from purse.transport.pcsc import PcscTransport
        transport = PcscTransport(card.removeprefix("pcsc:"))
    else:
        from purse.transport.virtual import VirtualTransport
        transport = VirtualTransport.open(Path(card))
    log = TerminalLog(home / "terminals/1.db", terminal_id=1, merchant_id=keys.merchant_id,
                      log_key=keys.terminal_log_keys())  # every version: a rotation strands no open batch
    terminal = Terminal(transport, keys.sam(), log, terminal_id=1, merchant_id=keys.merchant_id)

    view = terminal.read_card(program.program_id)
    print(f"card {view.info.number}: balance {money(view.balance)}, points {view.points.points}")
    receipt = terminal.debit(1250, points=ProgramPolicy(program))  # 12.50: purse and points commit together
    print(f"paid {money(receipt.amount)} (discount {money(receipt.discount)}), balance {money(receipt.balance)}, "
          f"points {receipt.points_after} (+{receipt.points_earned}), certificate {receipt.certificate.hex()}")
    for prize in receipt.prize_text:
        print("PRIZE:", prize)


if __name__ == "__main__":
    try:
        sell(Path(sys.argv[1]), sys.argv[2])
    except SmartpurseError as e:  # no card, card refused, wrong passphrase...: one line and its exit code
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
