"""Every command the docs show runs, page by page, so the docs cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_commands import DOCS, REPO, Command, page_commands, run_command

PAGES = sorted(DOCS.glob("*.md"))


def test_every_page_is_in_the_site_navigation() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    assert PAGES, "docs/ has no pages"
    missing = [p.name for p in PAGES if p.name not in nav]
    assert not missing, f"pages missing from mkdocs.yml nav: {missing}"


def test_the_parser_joins_continuations_and_skips_output(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        "text\n```console\n$ clipaudit world --out w \\\n    --n 5\nwrote 5\n$ ls w\n```\n"
        "```bash\n$ not-run\n```\n"
    )
    assert page_commands(page) == [
        Command("p.md", 3, "clipaudit world --out w --n 5"),
        Command("p.md", 6, "ls w"),
    ]


def test_a_failing_command_is_seen(tmp_path: Path) -> None:
    code, out = run_command(Command("p.md", 1, "clipaudit info no-such-folder"), tmp_path)
    assert code != 0 and "no-such-folder" in out
    code, _ = run_command(Command("p.md", 1, "false"), tmp_path)
    assert code != 0


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_page_commands_run(page: Path, tmp_path: Path) -> None:
    commands = page_commands(page)
    for cmd in commands:
        code, out = run_command(cmd, tmp_path)
        assert code == 0, f"{cmd.page}:{cmd.line}: `{cmd.text}` exited {code}:\n{out[-3000:]}"
