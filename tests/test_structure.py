"""Package structure: no import cycles, every import points down, registries load downward.

**Edges.** Every ``import`` of a spikeweave module anywhere in a module counts: at module
level, inside functions and methods, under ``try``/``if``. A function-local import still runs
and still ties the two modules together, so a cycle through one is a cycle. Only imports under
``if TYPE_CHECKING:`` (never executed) are left out. ``from pkg import name`` is an edge to the
submodule ``pkg.name`` when that is a module, else to the package ``pkg`` (its ``__init__``).

**Floors.** Each module sits on a floor (:data:`FLOORS`, the order of the design notes: cli →
experiments → security/compression/export/learning → training → data/neurons → functional →
errors/atomic). A module may import its own floor or any floor below; an import of a higher
floor is an *upward arrow* and fails the test. Within a floor, the cycle check keeps order.

**Registries.** A registry (:class:`spikeweave.registry.Registry`) imports its ``providers``
by name on first lookup: an import the AST does not show. The rule: a provider sits on its
registry's floor or on the floor directly above it, never higher. The floor above is the
registry's plug-in floor (``METHODS`` in training is filled by learning, security and
compression, which import training to subclass ``TrainingMethod``); anything higher would make
a low module (a neuron lookup) load a high one (an experiment) behind the reader's back.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import spikeweave
from spikeweave.registry import Registry

ROOT = Path(spikeweave.__file__).parent

FLOORS: dict[int, tuple[str, ...]] = {
    1: (
        "errors",
        "atomic",
        "checkpoint_file",
        "nested_state",
        "version",
        "registry",
        "options",
        "lazy",
        "toolchain",
    ),
    2: ("functional", "surrogate"),
    3: (
        "data",
        "neurons",
        "ablation_neurons",
        "layers",
        "models",
        "encoding",
        "losses",
        "tasks",
        "monitor",
        "plots",
    ),  # fmt: skip
    4: ("training",),
    5: ("learning", "security", "compression", "export"),
    6: ("experiments",),
    7: ("cli", ""),  # "": the package __init__, which re-exports the public API
}
"""Floor of each top-level module or subpackage of spikeweave (a subpackage's modules share it)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def floor(module: str) -> int:
    """The floor of ``spikeweave.X[.Y...]`` (that of its top-level part ``X``)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for level, names in FLOORS.items():
        if top in names:
            return level
    raise AssertionError(f"{module} has no floor: add it to FLOORS in tests/test_structure.py")


def _edges(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    never_run = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    out: set[str] = set()
    for stmt in ast.walk(tree):  # every import, at any depth (functions included)
        if id(stmt) in never_run:
            continue
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                target = alias.name
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target:
                    out.add(target)
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


def import_graph() -> dict[str, set[str]]:
    """``module -> modules it imports`` over every spikeweave module (rules in the docstring)."""
    modules = _modules()
    known = set(modules)
    return {name: _edges(name, path, known) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One closed path per back edge of a depth-first search: empty iff the graph is acyclic."""
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
    return cycles


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{a} (floor {floor(a)}) -> {b} (floor {floor(b)})"
        for a in sorted(graph)
        for b in sorted(graph[a])
        if floor(b) > floor(a)
    ]


def registries() -> list[tuple[str, str, Registry]]:
    """``(module, attribute, registry)`` for every module-level registry in the package."""
    found = []
    for name, path in sorted(_modules().items()):
        text = path.read_text()
        for attr in re.findall(r"^([A-Z_]+)\s*(?::[^=\n]*)?=\s*Registry\(", text, re.M):
            found.append((name, attr, getattr(importlib.import_module(name), attr)))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """The package's import graph, parsed once for the two rules that read it."""
    return import_graph()


def test_the_package_has_no_import_cycles_counting_function_local_imports(graph):
    cycles = find_cycles(graph)
    assert not cycles, f"{len(cycles)} import cycle(s): " + "; ".join(
        " -> ".join(c) for c in cycles[:5]
    )


def test_every_import_points_down_the_floors(graph):
    arrows = upward_arrows(graph)
    assert not arrows, "upward imports: " + "; ".join(arrows)


def test_no_registry_loads_a_provider_above_its_plug_in_floor():
    found = registries()
    assert {attr for _, attr, _ in found} >= {"NEURONS", "METHODS", "EXPERIMENTS", "MODELS"}
    bad = [
        f"{attr} ({module}, floor {floor(module)}) loads {p} (floor {floor(p)})"
        for module, attr, reg in found
        for p in reg._providers
        if floor(p) > floor(module) + 1
    ]
    assert not bad, "; ".join(bad)


def test_the_checker_sees_function_local_cycles_and_upward_arrows(tmp_path):
    # The rules above must be able to fail: a cycle made only of function-local imports and an
    # upward import are both caught.
    graph = {
        "spikeweave.data.a": {"spikeweave.data.b"},
        "spikeweave.data.b": {"spikeweave.training.x"},
        "spikeweave.training.x": {"spikeweave.data.a"},
    }
    assert find_cycles(graph) == [
        ["spikeweave.data.a", "spikeweave.data.b", "spikeweave.training.x", "spikeweave.data.a"]
    ]
    assert upward_arrows(graph) == [
        "spikeweave.data.b (floor 3) -> spikeweave.training.x (floor 4)"
    ]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from .other import thing\n")
    assert _edges("spikeweave.m", src, {"spikeweave.other"}) == {"spikeweave.other"}


def test_the_version_module_matches_the_distribution_version():
    from spikeweave.version import __version__

    text = (ROOT.parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == __version__
    assert spikeweave.__version__ == __version__
