"""The one interface every serving target implements, and the registry (one registered class per target, like timm's
model registry) with its capability queries.

A target is one room: it alone reads and writes its file formats (a .mar, a config.pbtxt, a manifest). The build
pipeline, the CLI, bench, tune, verify, inspect and the KServe target reach a target only through the registry:
`Target` for what every target does, and `capable` / `require` for what only some do (the protocols of
capabilities.py). A target's options are a dataclass of options.py's, whose fields carry their command-line flags.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..errors import UsageError
from ..registry import Registry
from ..report.build_report import BuildReport
from .capabilities import Capability
from .options import DeployOptions, cli_fields

C = TypeVar("C")


class Target:
    """Base of the targets: every method a target does not support refuses with one line."""

    name: ClassVar[str]
    Options: ClassVar[type[DeployOptions]] = DeployOptions
    description: ClassVar[str] = ""
    artifact: ClassVar[str] = ""  # what verify and inspect call the artifact it owns ("mar", "repository")
    packaged_by_build: ClassVar[bool] = False  # `pack build` writes its artifacts into every build folder

    def _unsupported(self, what: str) -> UsageError:
        return UsageError(f"the {self.name} target does not support {what}")

    def package(self, build_dir: Path, report: BuildReport) -> dict[str, Any]:
        """Write the target's artifacts under build_dir/<target>/ during `pack build`; the report section."""
        raise self._unsupported("packaging at build time")

    def deploy(self, build_dir: Path, report: BuildReport, opts: Any) -> dict[str, Any]:
        raise self._unsupported("deploy")

    def status(self, opts: Any) -> dict[str, Any]:
        raise self._unsupported("status")

    def undeploy(self, name: str, version: str | None, opts: Any) -> dict[str, Any]:
        raise self._unsupported("undeploy")

    def stop(self, opts: Any) -> dict[str, Any]:
        raise self._unsupported("stop")

    def owns(self, path: Path) -> bool:
        """Is `path` one of this target's artifacts (a .mar, a model repository)? For verify and inspect."""
        return False

    def verify(self, path: Path) -> list[tuple[str, str]]:
        """(path, problem) for every structural problem of an artifact this target owns."""
        return []

    def checked(self, path: Path) -> str:
        """What `verify(path)` checks of a stand-alone artifact, in the words `pack verify` prints."""
        return "structure only: no report to check digests against"

    def inspect(self, path: Path) -> dict[str, Any]:
        raise self._unsupported("inspect")


class ServerTarget(Target):
    """A target that runs on a server: deploy, status, undeploy and stop are the functions of its package's `deploy`
    module, and the build-time `package` that of the package itself, each imported only when it runs (listing targets
    does not import server code)."""

    def _room(self, module: str = "") -> Any:
        return importlib.import_module(type(self).__module__.rsplit(".", 1)[0] + module)

    def _flow(self) -> Any:
        return self._room(".deploy")

    def package(self, build_dir: Path, report: BuildReport) -> dict[str, Any]:
        """The target package's own `package` (its __init__), when `pack build` writes the target's artifacts."""
        if not self.packaged_by_build:
            return super().package(build_dir, report)
        return dict(self._room().package(build_dir, report))

    def deploy(self, build_dir: Path, report: BuildReport, opts: Any) -> dict[str, Any]:
        return dict(self._flow().deploy(build_dir, report, opts))

    def status(self, opts: Any) -> dict[str, Any]:
        return dict(self._flow().status(opts))

    def undeploy(self, name: str, version: str | None, opts: Any) -> dict[str, Any]:
        from ..report.names import check_name, check_version

        checked = None if version is None else check_version(version)
        return dict(self._flow().undeploy(check_name(name), checked, opts))

    def stop(self, opts: Any) -> dict[str, Any]:
        return dict(self._flow().stop(opts))


ROOMS = ("triton", "torchserve", "fastapi", "kserve")  # the order targets are listed and packaged in
TARGETS: Registry[Target] = Registry("target", order=ROOMS, load=[f"{__package__}.{room}.target" for room in ROOMS])
get_target = TARGETS.get
names = TARGETS.names
all_targets = TARGETS.entries


def register_target(cls: type[Target]) -> type[Target]:
    """Class decorator: register one instance of the target `cls` (its module is one of TARGETS' `load`)."""
    TARGETS.register(cls())
    return cls


def capable(capability: Capability[C]) -> dict[str, C]:
    """The registered targets that have `capability` (packager/targets/capabilities.py), by name, in order."""
    found: dict[str, C] = {}
    for target in all_targets():
        name = target.name
        if capability.holds(target):
            found[name] = target
    return found


def require(capability: Capability[C], target: Target) -> C:
    """`target` as having `capability`; one line (exit 2) naming the targets that have it when it does not."""
    if not capability.holds(target):
        raise UsageError(
            f"the {target.name} target does not support {capability.what}", f"use {' or '.join(capable(capability))}"
        )
    return target


def sole(capability: Capability[C]) -> C:
    """The one registered target that has `capability`: the target of a command that is one target's own (`pack
    archive`, `pack repo`, `pack check-repo`, `pack check-manifest`). A second target with it would need that command
    to take --target; until then this fails loudly (a bug in pack, not the user's input)."""
    found = list(capable(capability).values())
    if len(found) != 1:
        raise RuntimeError(f"{len(found)} registered targets support {capability.what}; the command needs --target")
    return found[0]


def make_options(target: Target, command: str, store: Path, given: dict[str, Any]) -> Any:
    """The target's options from the command line's values; a flag of another target is refused."""
    own = {f.name: f for f in cli_fields(target.Options) if command in f.metadata["cli"]["commands"]}
    values = {k: v for k, v in given.items() if v is not None and v is not False}
    foreign = [k for k in values if k not in own]
    if foreign:
        flags = {f.name: f.metadata["cli"]["flag"] for t in all_targets() for f in cli_fields(t.Options)}
        owners = [
            t.name
            for t in all_targets()
            if any(f.name == foreign[0] and command in f.metadata["cli"]["commands"] for f in cli_fields(t.Options))
        ]
        raise UsageError(
            f"{flags.get(foreign[0], foreign[0])} is not an option of --target {target.name}",
            f"it belongs to --target {' or '.join(owners)}" if owners else "see pack deploy --help",
        )
    return target.Options(store=store, **values)


__all__ = [
    "TARGETS",
    "ServerTarget",
    "Target",
    "all_targets",
    "capable",
    "get_target",
    "make_options",
    "names",
    "register_target",
    "require",
    "sole",
]
