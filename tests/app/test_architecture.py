"""The layers of docs/architecture.md, held by tests: a new back-arrow fails the suite.

The import rules are import-linter contracts in pyproject.toml; these tests run them,
prove once that they bite (a deliberately added back-arrow in a copy of the tree is
refused), and check what contracts cannot: what a terminal vendor's import loads, that
``smartpurse --help`` imports no command module, and who writes the registry tables.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

ROOT = REPO
LINT = Path(sys.executable).with_name("lint-imports")
BACK_OFFICE = ("sqlalchemy", "alembic", "numpy", "openpyxl", "click", "rich", "segno", "barcode", "PIL", "psycopg")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)


def test_the_import_contracts_hold() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("module", "back_arrow", "contract"), [
    ("purse/terminal.py", "from processing import db", "The card side (purse) imports no other library"),
    ("processing/ledger.py", "from personalization import registry", "Processing never imports the issuer station"),
    ("personalization/issuing.py", "from processing import importer", "The issuer station reaches processing only"),
    ("purse/hotlist.py", "import click", "The card side (purse) imports no other library"),
])
def test_a_back_arrow_breaks_a_contract(tmp_path: Path, module: str, back_arrow: str, contract: str) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "smartpurse-*",
                                                                "tests", "benchmarks", "docs"))
    target = tree / module
    target.write_text(target.read_text() + f"\n{back_arrow}  # noqa\n")
    done = lint(tree)
    assert done.returncode != 0
    assert contract in done.stdout and "BROKEN" in done.stdout


def _loaded_by(statement: str) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after ``statement``."""
    code = f"{statement}; import sys; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("statement", [
    "import purse.terminal", "import purse.station", "import purse.rolekeys", "import purse.transport.virtual",
])
def test_a_terminal_vendor_loads_no_back_office_package(statement: str) -> None:
    assert _loaded_by(statement).isdisjoint(BACK_OFFICE)


def test_help_and_a_sale_load_no_database_or_numpy() -> None:
    for argv in ("['--help']", "['pos', '--help']", "['cards', '--help']"):
        loaded = _loaded_by(f"import cli\ntry:\n    cli.main({argv})\nexcept SystemExit: pass")
        assert loaded.isdisjoint({"sqlalchemy", "alembic", "numpy", "openpyxl", "rich"}), argv


def test_every_lazy_command_help_is_the_commands_own() -> None:
    """The table in cli.py lists each command's help so ``--help`` imports nothing; it must not drift."""
    import click

    import cli

    for table in (cli.ROOT_COMMANDS, cli.CARD_COMMANDS):
        for name, lazy in table.items():
            command = lazy.load()
            assert click.Command(name, help=lazy.help).get_short_help_str(200) == command.get_short_help_str(200), \
                name


REGISTRY_TABLES = {"holders", "cards", "card_numbers", "card_transfers", "merchants", "terminals", "issue_batches",
                   "number_counters"}
# Who may write which registry table (docs/architecture.md, "The database layer").
REGISTRY_WRITERS = {
    "personalization/registry.py": REGISTRY_TABLES - {"number_counters"},
    "personalization/numbering.py": {"number_counters"},
    "processing/transfers.py": {"card_transfers"},  # stamps a transfer's posting (credited_at, amount)
}


def _writes(path: Path) -> set[str]:
    """Tables named as the first argument of insert()/update()/delete(), or as ``table.update()``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("insert", "update", "delete") and node.args:
            if isinstance(node.args[0], ast.Name):
                found.add(node.args[0].id)
        elif isinstance(func, ast.Attribute) and func.attr in ("insert", "update", "delete") \
                and isinstance(func.value, ast.Name):
            found.add(func.value.id)
    return found


def test_the_registry_module_is_the_only_writer_of_the_registry_tables() -> None:
    for package in ("purse", "personalization", "processing", "portal"):
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if "/migrations/" in rel:
                continue  # migrations create and reshape tables; they own no rows
            written = _writes(path) & REGISTRY_TABLES
            assert written <= REGISTRY_WRITERS.get(rel, set()), (rel, written)
