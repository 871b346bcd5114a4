"""Package structure: no import cycles among spikeweave's modules.

Edges are the module-level imports of each module (imports inside functions and under
``TYPE_CHECKING`` run later or never, so they cannot form a cycle at import time); importing a
package's ``__init__`` on the way to a submodule is not counted as an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import spikeweave

ROOT = Path(spikeweave.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _edges(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        stmts = [node] if not isinstance(node, ast.If | ast.Try) else list(ast.walk(node))
        for stmt in stmts:
            if isinstance(stmt, ast.Import):
                out |= {a.name for a in stmt.names if a.name in known}
            elif isinstance(stmt, ast.ImportFrom):
                base = stmt.module or ""
                if stmt.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - stmt.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in stmt.names:
                    target = f"{base}.{alias.name}"
                    if target in known:
                        out.add(target)
                    elif base in known:
                        out.add(base)
    out.discard(name)
    return out


def test_the_package_has_no_import_cycles():
    modules = _modules()
    known = set(modules)
    graph = {name: _edges(name, path, known) for name, path in modules.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])
