"""The library's layout is a rule, not a habit: each subpackage imports only the layers below it, and
nothing imports in a circle. Read from the source (every `import`, at any depth), nothing is run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lib" / "diffusion_study"

# What each subpackage may import from the package (besides itself). base is the floor: it imports
# nothing of the package; core is the mathematics and sees only base; book (the publishing machinery)
# never sees core; studies (one module per chapter, the command line) may use everything.
ALLOWED = {
    "base": set(),
    "core": {"base"},
    "nets": {"base", "core"},
    "data": {"base", "core"},
    "eval": {"base"},
    "training": {"base", "core", "nets", "data"},
    "book": {"base", "eval"},
    "studies": {"base", "core", "nets", "data", "eval", "training", "book", "studies"},
}
ENTRY_POINTS = {"train"}  # top-level modules that only start a command line


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the package's modules that `path` imports (absolute or relative, at any depth)."""
    tree = ast.parse(path.read_text())
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("diffusion_study")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if not name.startswith("diffusion_study"):
                continue
            found.add(name)
            for alias in node.names:  # `from diffusion_study.core import schedules` imports a module
                if (PKG.parent / (name + "." + alias.name).replace(".", "/")).with_suffix(".py").exists():
                    found.add(name + "." + alias.name)
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imported_modules(p) for p in sorted(PKG.rglob("*.py"))}


def test_every_module_lives_in_a_layer():
    loose = [m for m in import_graph() if m.count(".") == 1 and layer(m) not in ALLOWED
             and layer(m) not in ENTRY_POINTS]
    assert loose == [], f"modules outside the layers {sorted(ALLOWED)}: {loose}"


@pytest.mark.parametrize("home", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(home):
    wrong = []
    for module, imports in import_graph().items():
        if layer(module) != home:
            continue
        for target in imports:
            dest = layer(target)
            if dest is None or dest == home:
                continue
            if dest not in ALLOWED[home]:
                wrong.append(f"{module} imports {target}")
    assert wrong == [], f"{home} may import only {sorted(ALLOWED[home] | {home})}:\n" + "\n".join(wrong)


def test_no_module_imports_in_a_circle():
    graph = {m: {t for t in deps if t in import_graph_names()} for m, deps in import_graph().items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def import_graph_names() -> set[str]:
    return {module_name(p) for p in PKG.rglob("*.py") if p.name != "__init__.py"}


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rule can fail: a core module that imports the book is reported."""
    fake = tmp_path / "diffusion_study"
    (fake / "core").mkdir(parents=True)
    (fake / "book").mkdir()
    (fake / "book" / "results.py").write_text("")
    (fake / "core" / "bad.py").write_text("from diffusion_study.book.results import write_result\n")
    globals()["PKG"], saved = fake, PKG
    try:
        with pytest.raises(AssertionError, match="core.bad imports diffusion_study.book"):
            test_each_layer_imports_only_the_layers_below_it("core")
    finally:
        globals()["PKG"] = saved
