"""The terminal vendor's documentation: the API reference builds without a warning and says what to catch."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

from support import REPO

import purse

PUBLIC = ["purse.terminal", "purse.terminal_log", "purse.batch", "purse.rolekeys", "purse.loyalty",
          "purse.transport", "purse.transport.virtual", "purse.transport.pcsc", "purse.money", "purse.apdu",
          "purse.errors", "purse.cardnumber", "purse.hotlist", "purse.station"]


def test_every_public_module_declares_its_api_and_each_name_exists() -> None:
    for name in PUBLIC:
        module = importlib.import_module(name)
        assert module.__all__, name
        for attribute in module.__all__:
            assert hasattr(module, attribute), f"{name}.{attribute}"
            assert getattr(module, attribute).__doc__ or attribute.isupper() or attribute in ("ENTRY_LAYOUT",), \
                f"{name}.{attribute} has no docstring"
        assert name in (purse.__doc__ or "") or name.rsplit(".", 1)[0] in (purse.__doc__ or ""), name


def test_the_api_reference_builds_without_a_warning(tmp_path: Path) -> None:
    """The README's command, in a subprocess with warnings as errors."""
    done = subprocess.run([sys.executable, "-W", "error", "-m", "pdoc", "purse", "!purse._cli", "-o",
                           str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    index = (tmp_path / "purse.html").read_text()
    for exception in ("TransactionInterrupted", "CompletedBefore", "InsufficientFunds", "CardBlocked",
                      "NothingToCancel", "CardHotlisted", "WrongPin", "TransportError"):
        assert exception in index, exception
    assert "parse_amount" in (tmp_path / "purse" / "money.html").read_text()
    assert not (tmp_path / "purse" / "_cli.html").exists()


def test_the_package_says_what_it_is_and_what_changed() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(c.startswith("Topic :: Office/Business :: Financial :: Point-Of-Sale") for c in project["classifiers"])
    assert "Typing :: Typed" in project["classifiers"] and project["license"]
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## {project['version']} (" in changelog and "## Unreleased" in changelog
