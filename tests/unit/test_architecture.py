"""The house's walls, checked on the import graph (every import statement in packager/, module-level or inside a
function): the build pipeline imports no target; a target never imports another target's modules; everything else
reaches a target only through packager.targets (its registry and the Target interface)."""

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


def _imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved; `from x import y` gives x and x.y)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
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
