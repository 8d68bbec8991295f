"""The layering of docs/architecture.md holds: every import in the package is one its module's row
of the "may import" table allows, every module has a row, and no import cycle exists."""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "gatekeeper"
DOC = REPO / "docs" / "architecture.md"


@dataclass(frozen=True)
class Row:
    paths: tuple[str, ...]  # repository-relative: files, or directories ending in "/"
    internal: tuple[str, ...]  # gatekeeper module prefixes it may import
    external: frozenset[str]  # third-party top-level modules it may import

    def covers(self, path: str) -> int:
        """How specifically this row names `path` (the longest matching entry), 0: not at all."""
        return max((len(p) for p in self.paths
                    if path == p or (p.endswith("/") and path.startswith(p))), default=0)


def table_rows(markdown: str) -> list[Row]:
    """The rows of the module table under "## Modules" (until the addon table)."""
    section = markdown.split("## Modules", 1)[1].split("The addons, in hook order", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        base = names[0].rsplit("/", 1)[0] if "/" in names[0].rstrip("/") else ""
        paths = tuple(n if n.startswith(("gatekeeper/", "addons/")) else f"{base}/{n}"
                      for n in names)
        allowed = [a.strip().strip("`") for a in cells[2].split(",")]
        rows.append(Row(
            paths,
            tuple(a for a in allowed if a.startswith("gatekeeper")),
            frozenset(a for a in allowed if a and a != "stdlib" and not a.startswith("gatekeeper")),
        ))
    return rows


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports at run time (inside functions too; not under TYPE_CHECKING):
    `from package import submodule` counts as the submodule."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {id(node) for block in ast.walk(tree)
               if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
               for node in ast.walk(block)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module_name(path).split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if base.startswith("gatekeeper") and is_module(sub) else base)
    return found


def row_of(rows: list[Row], path: str) -> Row | None:
    best = max(rows, key=lambda r: r.covers(path))
    return best if best.covers(path) else None


def forbidden(rows: list[Row], path: Path, imported: set[str]) -> list[str]:
    """The imports of `path` its row does not allow."""
    relative = path.relative_to(REPO).as_posix()
    row = row_of(rows, relative)
    if row is None:
        return [f"{relative}: no row of the module table covers it"]
    problems = []
    for name in sorted(imported):
        top = name.split(".")[0]
        if top == "gatekeeper":
            target = REPO.joinpath(*name.split("."))
            target_path = (target.with_suffix(".py") if target.with_suffix(".py").is_file()
                           else target / "__init__.py").relative_to(REPO).as_posix()
            if name == "gatekeeper" or row_of(rows, target_path) is row:
                continue
            if not any(name == p or name.startswith(p + ".") for p in row.internal):
                problems.append(f"{relative} imports {name}")
        elif top not in sys.stdlib_module_names and top not in row.external:
            problems.append(f"{relative} imports {top} (third-party)")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    parsed = table_rows(DOC.read_text())
    assert len(parsed) >= 20, "the module table of docs/architecture.md was not found"
    return parsed


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_import_is_one_the_table_allows(rows: list[Row]) -> None:
    problems = [p for path in MODULES for p in forbidden(rows, path, imports_of(path))]
    assert not problems, "\n".join(problems)


def test_no_import_cycle_in_the_package() -> None:
    graph = {module_name(path): {name for name in imports_of(path)
                                 if name.startswith("gatekeeper.") and is_module(name)}
             for path in MODULES}
    assert not cycles(graph)


def test_nothing_below_the_cli_imports_it() -> None:
    users = [module_name(path) for path in MODULES
             if not module_name(path).startswith(("gatekeeper.cli", "gatekeeper.__main__"))
             and any(name.startswith("gatekeeper.cli") for name in imports_of(path))]
    assert not users


def test_the_checks_see_a_forbidden_import_and_a_cycle(rows: list[Row], tmp_path: Path) -> None:
    """The checks themselves: a core module importing the state or mitmproxy is refused, and two
    modules importing each other are a cycle."""
    core = PACKAGE / "core" / "hosts.py"
    assert forbidden(rows, core, {"gatekeeper.state", "mitmproxy.http", "re"}) == [
        "gatekeeper/core/hosts.py imports gatekeeper.state",
        "gatekeeper/core/hosts.py imports mitmproxy (third-party)",
    ]
    assert forbidden(rows, PACKAGE / "cli" / "ca.py", {"gatekeeper.ca"}) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
