"""The package's shape stays what the docs say: no import cycle among ``curate`` modules
(the engines get a job and never import the pipeline), no file-name prefix standing in for a
folder, and each signal family's stage module registered."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import clipaudit

SRC = Path(clipaudit.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import, at any depth (a lazy import inside a
    function still ties the modules together), except those only for type checkers."""
    out: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph(package: str) -> dict[str, set[str]]:
    """Module → the modules of ``package`` it imports."""
    root = SRC.parent / package.replace(".", "/")
    modules = {_module_name(p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for module, names in _imports(ast.parse(path.read_text())):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            if not targets and module in modules:
                targets = [module]
            graph[name].update(t for t in targets if t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := dfs(node)):
            return found
    return None


def test_no_import_cycle_among_curate_modules() -> None:
    graph = import_graph("clipaudit.curate")
    assert len(graph) > 25 and graph["clipaudit.curate.pipeline"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
    engines = [m for m in graph if m.startswith("clipaudit.curate.engines")]
    assert engines and all("clipaudit.curate.pipeline" not in graph[m] for m in engines)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_lazy_imports_count_and_type_checking_imports_do_not() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from x import y\n"
        "def f():\n    from z import w\n"
    )
    assert [m for m, _ in _imports(tree)] == ["typing", "z"]


def test_no_file_prefix_stands_in_for_a_folder() -> None:
    for folder in [SRC / "curate", *[p for p in (SRC / "curate").rglob("*") if p.is_dir()]]:
        if folder.name == "__pycache__":
            continue
        stems = [p.stem for p in folder.glob("*.py") if "_" in p.stem.strip("_")]
        prefixes = Counter(s.split("_")[0] for s in stems)
        shared = sorted(p for p, n in prefixes.items() if n > 1)
        assert not shared, f"{folder}: files share the prefix {shared}; make it a folder"


def test_every_stage_module_registers_a_stage() -> None:
    from clipaudit.curate import stages

    stages.load_stage_modules()
    modules = {cls.__module__.rsplit(".", 1)[-1] for cls in stages.STAGES.values()}
    assert modules == set(stages.RULE_MODULES + stages.SCORING_ONLY_MODULES)


def test_committed_benchmark_results_carry_no_machine_path() -> None:
    """A result records the command and a description of its inputs, not where a file lay
    on the machine that ran it (``/tmp/…``, a home or work folder)."""
    import re

    results = Path(__file__).resolve().parents[1] / "bench" / "results"
    machine_path = re.compile(r"(?<![\w.:/])/(?:tmp|work|home|root|Users|var|private)/[^\s\"']*")
    found = {
        f.name: hits
        for f in sorted(results.glob("*"))
        if f.suffix in {".json", ".md"} and (hits := machine_path.findall(f.read_text()))
    }
    assert len(list(results.glob("*.json"))) > 10
    assert not found, found
    assert machine_path.findall('{"pool": "/tmp/x/pool/data"}') == ["/tmp/x/pool/data"]


def test_no_symlink_or_environment_is_tracked() -> None:
    """A worktree's `.venv` link was committed (the ignore pattern `.venv/` matches a folder
    only), and merging it replaced the real environment with a link to itself."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return  # an sdist or a copy without history: nothing is tracked
    r = subprocess.run(
        ["git", "ls-files", "-s"], cwd=root, capture_output=True, text=True, check=True
    )
    entries = [line.split(maxsplit=3) for line in r.stdout.splitlines()]
    links = [path for mode, _, _, path in entries if mode == "120000"]
    assert links == []
    assert not [p for *_, p in entries if p.split("/")[0] in {".venv", "venv", ".env"}]
