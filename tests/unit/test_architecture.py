"""The house's walls, checked on the import graph (every import statement in packager/, module-level or inside a
function) and on the code's own words: the build pipeline imports no target; a target never imports another target's
modules, nor the pipeline (export/, build/) nor the commands (cli/); everything else reaches a target only through
packager.targets (its registry, the Target interface and the capabilities' protocols), never by a target's name; and
the only import cycle among the targets is the registry's lazy registration; and report/ and serve/, the lower
packages, import nothing above them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "packager"
PIPELINE = (
    "build",
    "prepare",
    "reference",
    "record",
    "report",
    "validate",
    "cases",
    "modelio",
    "loader",
    "plan",
    "registry",
    "families",
    "samples",
    "runners",
    "measure",
    "summary",
    "spec",
    "store",
    "export",
    "models",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _statements(path: Path) -> list[tuple[str, list[str]]]:
    """Every import statement of `path` as (absolute module, the names taken from it: none for `import x`), relative
    imports resolved against the file's package."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
            found.append((module, [alias.name for alias in node.names]))
    return found


def _imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved; `from x import y` gives x and x.y)."""
    found: set[str] = set()
    for module, taken in _statements(path):
        found.add(module)
        found.update(f"{module}.{name}" for name in taken)
    return {m for m in found if m.startswith("packager")}


MODULES = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py")) if p.parent != PACKAGE or p.name != "__init__.py"}


def _area(module: str) -> str:
    return module.split(".")[1]


TARGET_ROOMS = {p.name for p in (PACKAGE / "targets").iterdir() if (p / "__init__.py").is_file()}


def _target_of(module: str) -> str | None:
    """The target room a module belongs to (packager.targets.base and .processes are shared, not a room)."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "targets" and parts[2] in TARGET_ROOMS else None


def test_the_graph_was_read():
    assert "packager.build.pipeline" in MODULES and "packager.targets.triton.deploy" in MODULES
    assert any(m.startswith("packager.targets") for m in MODULES["packager.cli.serve"])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _area(m) in PIPELINE))
def test_the_pipeline_imports_no_target(module):
    assert not [m for m in MODULES[module] if m.startswith("packager.targets")], module


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _target_of(m)))
def test_a_target_never_imports_another_targets_modules(module):
    own = _target_of(module)
    others = sorted(m for m in MODULES[module] if _target_of(m) not in (None, own))
    assert not others, f"{module} imports {others}"


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if not m.startswith("packager.targets") and _area(m) not in PIPELINE)
)
def test_everything_else_reaches_targets_through_the_interface(module):
    inside = sorted(m for m in MODULES[module] if _target_of(m))
    assert not inside, f"{module} imports target internals {inside}"


NOT_FOR_TARGETS = (
    "packager.export",
    "packager.build",
    "packager.variants",
    "packager.cli",
    "packager.bench",
    "packager.tune",
)  # the pipeline and the commands


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _area(m) == "targets"))
def test_a_target_never_imports_the_pipeline_or_the_commands(module):
    """What a target needs of a build comes from BuildReport and report/ (the served file: report.formats; the
    integrity check: report.integrity), what it shares with the other servers from serve/, and noisy libraries are
    silenced by console.captured; the command that hands it a build checked the build first."""
    reached = sorted(m for m in MODULES[module] if m.startswith(NOT_FOR_TARGETS))
    assert not reached, f"{module} imports {reached}"


def _source(module: str) -> Path:
    path = PACKAGE.parent / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _words(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant in the file's code (docstrings are prose, and left out)."""
    tree = ast.parse(path.read_text(), str(path))
    prose = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in prose
    ]


REGISTRY = "packager.targets.base"  # where the targets' order is written
OTHER_WORDS = {  # a target's name that is another thing's own word where it stands
    ("packager.targets.torchserve.target", "kserve"): "TorchServe's service_envelope value for KServe's v1 protocol",
}


def test_the_registry_knows_every_target_room():
    from packager.targets import names

    assert set(names()) == TARGET_ROOMS


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_target_is_named_outside_its_own_room_and_the_registry(module):
    """Choices, rows, defaults and runtimes are derived from the registry (`names()`, `capable(...)`): code that
    writes a target's name picks that target around the registry, and a new target would be missed there."""
    from packager.targets import names

    named = [
        f"{module}:{line} {word!r}"
        for line, word in _words(_source(module))
        if word in names() and module != REGISTRY and _target_of(module) != word and (module, word) not in OTHER_WORDS
    ]
    assert not named, named


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_target_is_fetched_by_a_name_written_in_the_code(module):
    """`get_target` takes the name a user gave (`--target`); a constant there is a call around the registry's
    discovery, and inside a target's own room it is the import cycle this file forbids below."""
    path = _source(module)
    calls = [
        f"{module}:{n.lineno}"
        for n in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(n, ast.Call)
        and (n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")) == "get_target"
        and n.args
        and isinstance(n.args[0], ast.Constant)
    ]
    assert not calls, calls


def _arrows(path: Path) -> set[str]:
    """The modules of packager `path` imports, as the loops of an import graph count them: `from pkg import name` is
    an arrow to pkg.name when that is a module (pkg itself is loaded already, by whoever imported `path`), else to
    pkg."""
    found: set[str] = set()
    for module, taken in _statements(path):
        if not taken:  # `import x`
            found.add(module)
        found.update(f"{module}.{n}" if f"{module}.{n}" in MODULES else module for n in taken)
    return {m for m in found if m in MODULES}


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), set()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The loops of the graph: each set of modules that all reach each other (more than one module)."""
    reach = {m: _reach(graph, m) for m in graph}
    loops = {frozenset(n for n in reach[m] if m in reach.get(n, set())) | {m} for m in graph if m in reach[m]}
    return [set(loop) for loop in sorted(loops, key=sorted) if len(loop) > 1]


def test_no_cycle_among_the_targets():
    """The registry loads each target's target.py by name when first asked (packager/registry.py), so no module of
    the targets imports one that imports it back: a target's module that asks the registry for a target, or imports
    the commands that import the registry, would make a cycle."""
    graph = {m: _arrows(_source(m)) for m in MODULES if _area(m) == "targets"}
    assert _cycles(graph) == []
    assert all(REGISTRY in graph[f"packager.targets.{room}.target"] for room in TARGET_ROOMS)  # the graph was read


def test_every_server_target_has_its_whole_deploy_flow():
    """ServerTarget finds deploy, status, undeploy and stop in the target's own deploy module at call time: a missing
    one would only show as an internal error when a user runs that command."""
    from packager.targets import all_targets
    from packager.targets.base import ServerTarget

    servers = [t for t in all_targets() if isinstance(t, ServerTarget)]
    assert {t.name for t in servers} >= {"triton", "torchserve"}
    for target in servers:
        flow = target._flow()
        missing = [f for f in ("deploy", "status", "undeploy", "stop") if not callable(getattr(flow, f, None))]
        assert not missing, f"{target.name}: {flow.__name__} lacks {missing}"


TOP_LEVEL = {"packager", "packager.registry", "packager.errors", "packager.console", "packager.safeio", "packager.archive"}
LAYERS = {  # what each lower package may import besides itself and the top-level modules: the arrows only go down
    "report": set(),
    "serve": {"report"},
}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _area(m) in LAYERS))
def test_the_lower_packages_import_nothing_above_them(module):
    """report/ (a build folder as data) and serve/ (what every server shares) sit under the pipeline, the targets and
    the commands: an arrow from them up is a cycle waiting to happen, and would pull torch or a server into readers
    that need neither."""
    area = _area(module)
    allowed = {area} | LAYERS[area]
    assert not _above(MODULES[module], allowed), f"{module} imports {_above(MODULES[module], allowed)}"


def _above(imported: set[str], allowed: set[str]) -> list[str]:
    """The imported names outside the top-level modules and the allowed packages (`from x import y` gives x.y too)."""
    return sorted(m for m in imported if ".".join(m.split(".")[:2]) not in TOP_LEVEL and m.split(".")[1] not in allowed)


def test_a_target_importing_the_pipeline_fails_the_wall():
    """The wall holds with a made-up arrow from a target to export/, and a report module reaching into build/."""
    tried = {
        **MODULES,
        "packager.targets.triton.repository": MODULES["packager.targets.triton.repository"] | {"packager.export.onnx"},
    }
    assert [m for m in tried["packager.targets.triton.repository"] if m.startswith(NOT_FOR_TARGETS)] == ["packager.export.onnx"]
    assert _above(MODULES["packager.report.validate"] | {"packager.build.cases.Case"}, {"report"}) == [
        "packager.build.cases.Case"
    ]
