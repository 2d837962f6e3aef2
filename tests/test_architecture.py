"""The import direction of docs/ARCHITECTURE.md, checked on every import of every module (in functions too).

The layer table is read from the document itself, so the document cannot drift from the code: a new
module must be placed in a layer, and an import that reaches up a layer, into the commands, into the
experiments or around a circle fails here with the importing file and line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "urlvr"
DOC = REPO / "docs" / "ARCHITECTURE.md"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(path: Path, known: set[str]) -> list[tuple[str, int]]:
    """``(urlvr module, line)`` for every import in ``path``: ``from a import b`` counts as ``a.b`` if that is a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "urlvr"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "urlvr" and not node.level:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.append((full if full in known else node.module, node.lineno))
    return out


def layers() -> dict[str, int]:
    table = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| (\d) [^|]+ \| (.+) \|$", line)
        if m:
            for name in re.findall(r"`([a-z_.]+)`", m[2]):
                assert name not in table, f"{name} is in two layers of {DOC.name}"
                table[name] = int(m[1])
    return table


def graph() -> dict[str, list[tuple[str, int]]]:
    mods = modules()
    return {name: imports(path, set(mods)) for name, path in mods.items()}


def test_every_module_has_a_layer_and_every_layer_entry_exists():
    table, mods = layers(), set(modules()) - {"urlvr"}
    assert not mods - set(table), f"place these modules in a layer of {DOC.name}: {sorted(mods - set(table))}"
    assert not set(table) - mods, f"{DOC.name} names modules that do not exist: {sorted(set(table) - mods)}"


def test_imports_never_reach_up_a_layer():
    table, bad = layers(), []
    for name, edges in graph().items():
        if name == "urlvr":
            continue
        for target, line in edges:
            if target != "urlvr" and table[target] > table[name]:
                bad.append(f"{name}:{line} imports {target} (layer {table[target]} > {table[name]})")
    assert not bad, "\n".join(bad)


def test_the_library_never_imports_the_commands_or_the_experiments():
    bad = []
    for name, edges in graph().items():
        for target, line in edges:
            if target.startswith("urlvr.cli") and not (name.startswith("urlvr.cli") or name == "urlvr.__main__"):
                bad.append(f"{name}:{line} imports the command module {target}")
            if target.startswith("urlvr.experiments") and not name.startswith(("urlvr.experiments", "urlvr.cli")):
                bad.append(f"{name}:{line} imports {target}: experiments are consumers, never imported by the library")
    assert not bad, "\n".join(bad)


def test_no_import_circles():
    g = {name: sorted({t for t, _ in edges if t != name}) for name, edges in graph().items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in g.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in g:
        if start not in state and (cycle := visit(start)):
            raise AssertionError("import circle: " + " -> ".join(cycle))


def test_the_training_loop_exists_once():
    """``train_step(`` is called by the loop in urlvr/trainer.py only (tests call it to test it)."""
    calls = []
    for path in [*PACKAGE.rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\.train_step\(", line):
                calls.append(f"{path.relative_to(REPO)}:{i}")
    assert len(calls) == 1 and calls[0].startswith("urlvr/trainer.py"), calls
