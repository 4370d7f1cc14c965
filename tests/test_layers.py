"""The layer contract: imports run one way, and no modules import each other in a circle.

    foundation (errors, fileio, languages) -> tasks -> data -> models -> evaluation -> train
    -> study -> commands -> cli

A module may import its own layer and any layer to its left, never one to its right; imports
inside functions count as much as those at the top (an import moved into a function to dodge a
cycle is still the cycle), and below the commands there are none. Read from the source with :mod:`ast`, so the test needs nothing
installed and names the file and line of every violation.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xstilts"

LAYERS = ("foundation", "tasks", "data", "models", "evaluation", "train", "study", "commands", "cli")
FOUNDATION = {"errors", "fileio", "languages", "__init__"}

# No cycle is left: the NLU and code readers register with xstilts.data.readers (FAMILY_READERS).
KNOWN_CYCLES: list[set[str]] = []


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "xstilts":
        return None
    if len(parts) == 1 or parts[1] in FOUNDATION:
        return "foundation"
    return parts[1] if parts[1] in LAYERS else None


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path) -> list[tuple[str, int]]:
    """Every ``xstilts`` module a file imports (``from a import b``: ``a`` and ``a.b``), with lines."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xstilts"):
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("xstilts")]
    return found


def test_imports_run_one_way_through_the_layers():
    known = modules()
    violations = []
    for name, path in known.items():
        here = layer_of(name)
        for target, line in imports(path):
            if target not in known:
                continue  # ``from pkg import function``: the module itself is listed too
            there = layer_of(target)
            if here and there and LAYERS.index(there) > LAYERS.index(here):
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} imports {target} ({there})")
    assert not violations, "imports against the layer order:\n" + "\n".join(violations)


def test_no_import_cycles_between_modules():
    known = modules()
    graph = {name: {t for t, _ in imports(path) if t in known and t != name and not name.startswith(t + ".")}
             for name, path in known.items()}
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    unexpected = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    assert not unexpected, f"modules that import each other in a circle: {unexpected}"


def function_imports(path: Path) -> list[int]:
    """Lines of ``xstilts`` imports inside a function (``if TYPE_CHECKING:`` blocks are not)."""
    lines = []
    for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if (module or "").startswith("xstilts") or any(n.startswith("xstilts") for n in names):
                    lines.append(node.lineno)
    return sorted(set(lines))


def test_imports_are_at_the_top_below_the_commands():
    """Below the command line, every xstilts import is at the top of its file. (The commands
    import their layers when they run, so that `xstilts --help` does not load torch.)"""
    late = []
    for name, path in modules().items():
        if layer_of(name) in ("commands", "cli"):
            continue
        late += [f"{path.relative_to(PACKAGE.parent)}:{line}" for line in function_imports(path)]
    assert not late, "xstilts imports inside functions:\n" + "\n".join(late)


def function_imports_seen(tmp_path: Path) -> bool:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    if True:\n        from xstilts.errors import ConfigError\n")
    return function_imports(probe) == [3]


def test_the_contract_sees_a_violation(tmp_path, monkeypatch):
    """The checks are not vacuous: a data module importing the study layer is reported."""
    assert function_imports_seen(tmp_path)
    fake = tmp_path / "xstilts"
    (fake / "data").mkdir(parents=True)
    (fake / "study").mkdir()
    (fake / "data" / "bad.py").write_text("def f():\n    from xstilts.study.runner import run_study\n")
    (fake / "study" / "runner.py").write_text("from xstilts.data import bad\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    try:
        test_imports_run_one_way_through_the_layers()
    except AssertionError as exc:
        assert "data/bad.py:2: data imports xstilts.study.runner (study)" in str(exc)
    else:
        raise AssertionError("the layer check missed data -> study")
    try:
        test_no_import_cycles_between_modules()
    except AssertionError as exc:
        assert "xstilts.data.bad" in str(exc) and "xstilts.study.runner" in str(exc)
    else:
        raise AssertionError("the cycle check missed data.bad <-> study.runner")
