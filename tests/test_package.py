"""The layout of the package: aprlib is layered (subpackages, no import cycle among its modules),
never imports the book's experiment code (aprbook), and `import aprlib` stays light."""
from __future__ import annotations

import ast
import importlib
import importlib.machinery
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import aprlib

ROOT = Path(aprlib.__file__).resolve().parent
HEAVY = ("pandas", "matplotlib", "papermill", "scipy", "skimage", "PIL", "tqdm")


def _modules(extensions: bool = False) -> dict[str, Path]:
    """Every module of aprlib (packages by their __init__.py): dotted name -> source file; with
    ``extensions`` also the compiled ones (``aprlib._core``: a leaf of the import graph)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    if extensions:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            for path in ROOT.rglob("*" + suffix):
                rel = path.relative_to(ROOT.parent)
                out[".".join(rel.parts[:-1] + (path.name[:-len(suffix)],))] = path
    return out


def _is_package(name: str, modules: dict) -> bool:
    return modules[name].name == "__init__.py"


def _imports(name: str, path: Path, modules: dict, everywhere: bool = False) -> set[str]:
    """The modules that ``name`` imports at module level: ``import x``, ``from x import y`` (the module
    x, or y itself when it is a submodule of x: not then x's __init__), relative or absolute,
    including those under a module-level ``if``/``try``; with ``everywhere`` also those inside
    functions and classes (the imports deferred to call time)."""
    package = name if _is_package(name, modules) else name.rsplit(".", 1)[0]
    out = set()

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module
                for a in node.names:  # a submodule (from .. import _core) or a name of the module
                    out.add(f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for h in getattr(node, "handlers", ()):
                    visit(h.body)
                visit(getattr(node, "finalbody", ()))

    tree = ast.parse(path.read_text(), str(path))
    visit([n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))] if everywhere else tree.body)
    return out


def _graph(everywhere: bool = False) -> dict[str, set[str]]:
    modules = _modules(extensions=True)
    graph = {}
    for name, path in modules.items():
        if path.suffix != ".py":
            graph[name] = set()
            continue
        targets = _imports(name, path, modules, everywhere)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_every_module_imports_and_none_imports_aprbook():
    modules = _modules()
    assert len(modules) > 10
    for info in pkgutil.walk_packages(aprlib.__path__, "aprlib."):
        importlib.import_module(info.name)
    offenders = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):  # anywhere in the module, functions included
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(n == "aprbook" or n.startswith("aprbook.") for n in names):
                offenders.setdefault(name, []).append(node.lineno)
    assert not offenders, f"aprlib modules importing aprbook: {offenders}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (a list of modules, first = last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_import_graph_has_no_cycle():
    graph = _graph()
    assert graph["aprlib.ops.plans"] >= {"aprlib.apr.structure", "aprlib._core"}, graph["aprlib.ops.plans"]
    assert "aprlib.nn.layers" not in graph["aprlib.ops.plans"]
    cycle = _cycle(graph)
    assert cycle is None, "import cycle among aprlib's module-level imports: " + " -> ".join(cycle)
    # nor through the imports deferred into functions (how functional -> plans -> layers -> functional hid)
    cycle = _cycle(_graph(everywhere=True))
    assert cycle is None, "import cycle among aprlib's imports (deferred ones included): " + " -> ".join(cycle)
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check itself works


def test_import_aprlib_is_light():
    code = ("import sys; before = set(sys.modules); import torch, numpy; base = set(sys.modules); import aprlib; "
            f"heavy = {HEAVY!r}; "
            "print(json.dumps({'aprlib': sorted(m for m in heavy if m in sys.modules), "
            "'torch': sorted(m for m in heavy if m in base)}))")
    r = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, timeout=300,
                       cwd=ROOT.parent)
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    # torch itself imports tqdm (torch.hub): only what aprlib adds to what torch loads counts
    assert sorted(set(loaded["aprlib"]) - set(loaded["torch"])) == []
    assert not {"pandas", "matplotlib", "papermill", "scipy", "skimage", "PIL"} & set(loaded["aprlib"])


def test_import_aprlib_alone_loads_no_plotting_table_or_image_library():
    code = ("import aprlib, sys; print(sorted(m for m in ('pandas','matplotlib','papermill','scipy','skimage','PIL') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_aprlib_has_subpackages():
    subpackages = [m.name for m in pkgutil.iter_modules(aprlib.__path__) if m.ispkg]
    assert len(subpackages) >= 3, subpackages
    assert {"apr", "ops", "nn", "models", "data", "train"} <= set(subpackages)
