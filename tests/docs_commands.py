"""The commands the docs show, as the test suite runs them.

A docs page shows commands in fenced ``console`` blocks, one per line after ``$ `` (a line
ending in ``\\`` continues on the next); the lines without ``$`` are the output a reader
should expect and are not checked. Every page's commands run in order, in one fresh folder,
so a page sets up its own data (usually with ``clipaudit world`` or ``clipaudit example``)
and a reader can paste them as they stand. ``clipaudit ...`` commands run in this process
through the CLI app (no interpreter start per command); anything else runs in bash with the
repository's ``bench/`` and the package's interpreter on hand.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
FENCE = re.compile(r"^```console\s*\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    text: str


def page_commands(page: Path) -> list[Command]:
    """The ``$ `` commands of one page's console blocks, continuations joined."""
    text = page.read_text()
    out: list[Command] = []
    for block in FENCE.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        pending: list[str] = []
        start = 0
        for i, raw in enumerate(block.group(1).splitlines()):
            line = raw.rstrip()
            if pending:
                pending.append(line.rstrip("\\").strip())
            elif line.startswith("$ "):
                pending, start = [line[2:].rstrip("\\").strip()], first + i
            else:
                continue
            if not line.endswith("\\"):
                out.append(Command(page.name, start, " ".join(p for p in pending if p)))
                pending = []
    return out


def run_command(cmd: Command, cwd: Path) -> tuple[int, str]:
    """Run one command in ``cwd``; returns (exit code, output)."""
    words = shlex.split(cmd.text)
    shell_syntax = any(c in cmd.text for c in "|&;<>$`") or "=" in words[0]
    if words[0] == "clipaudit" and not shell_syntax:
        from typer.testing import CliRunner

        from clipaudit.cli import app

        here = Path.cwd()
        os.chdir(cwd)
        try:
            result = CliRunner().invoke(app, words[1:])
        finally:
            os.chdir(here)
        output = result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            output += f"\n{type(result.exception).__name__}: {result.exception}"
        return result.exit_code, output
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "CLIPAUDIT_REPO": str(REPO),
    }
    proc = subprocess.run(
        ["bash", "-c", f"set -eo pipefail; {cmd.text}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr
