"""Running ``smartpurse`` in process through ``cli.main``, as a user sees it: exit code, stdout, stderr."""

from __future__ import annotations

import json
from typing import Any

import pytest

import cli


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        cli.main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def ok_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run(capsys, "--json", *args)
    assert code == 0, err
    return json.loads(out)


def fails(capsys: pytest.CaptureFixture[str], message: str, *args: str) -> str:
    """The command fails with one line (no traceback) containing ``message``."""
    code, out, err = run(capsys, *args)
    assert code != 0 and message in err, (code, out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err
