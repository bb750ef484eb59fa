"""The README's five-minute tour, run line by line in a fresh folder, as a new user copies it.

Each ``$`` line runs in one bash session (so ``export`` carries on), with the venv's
``smartpurse`` first on PATH, as ``source .venv/bin/activate`` leaves it. Each printed line
must appear in that command's output, in order; ``…`` matches whatever differs from run to
run. A command shown with an ``error:`` line must fail; every other one must succeed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

MARK = "@@tour-step"


def tour() -> list[tuple[str, list[str]]]:
    text = (REPO / "README.md").read_text()
    block = text.split("## A five-minute tour", 1)[1].split("```\n", 2)[1]
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def _pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in line.split("…")) + r"\s*")


@pytest.mark.slow
def test_the_tour_runs_as_printed(tmp_path: Path) -> None:
    steps = tour()
    assert len(steps) > 15 and steps[0][0].startswith("export SMARTPURSE_HOME")
    script = "".join(f"echo {MARK} {i}\n{command}\necho {MARK} {i} status $?\n" for i, (command, _) in enumerate(steps))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTPURSE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["bash", "-c", "exec 2>&1\n" + script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    outputs = re.split(rf"^{MARK} \d+\n", done.stdout, flags=re.M)[1:]
    assert len(outputs) == len(steps), done.stdout[-2000:]
    for (command, expected), output in zip(steps, outputs, strict=True):
        body, status = output.rsplit(f"{MARK} ", 1)
        code = int(status.split()[-1])
        should_fail = any(line.startswith("error:") for line in expected)
        assert (code != 0) == should_fail, (command, code, body)
        actual = body.splitlines()
        at = 0
        for line in expected:
            pattern = _pattern(line)
            while at < len(actual) and not pattern.fullmatch(actual[at]):
                at += 1
            assert at < len(actual), f"$ {command}\nexpected: {line}\ngot:\n{body}"
            at += 1
