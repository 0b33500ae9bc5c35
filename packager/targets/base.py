"""The one interface every serving target implements, its typed options, and the registry (one registered class per
target, like timm's model registry).

A target is one room: it alone reads and writes its file formats (a .mar, a config.pbtxt, a manifest). The build
pipeline, the CLI, bench, verify, inspect and the KServe target reach TorchServe and Triton only through `Target`.
Options are dataclasses whose fields carry their command-line flag (`cli_field`); the CLI builds its options from
them, so a target's flags live with the target.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import UsageError
from ..registry import Registry
from ..report.build_report import BuildReport


def cli_field(
    default: Any,
    flag: str,
    help: str,
    *,
    type: Any = None,
    choices: tuple[str, ...] | None = None,
    is_flag: bool = False,
    commands: tuple[str, ...] = ("deploy",),
) -> Any:
    """A dataclass field that is also a command-line option of the given commands."""
    meta = {"flag": flag, "help": help, "type": type, "choices": choices, "is_flag": is_flag, "commands": commands}
    return field(default=default, metadata={"cli": meta})


SERVER = ("deploy", "status", "undeploy")  # the commands that talk to a server


@dataclass
class DeployOptions:
    """What every target's commands may read; each target's own options (a subclass) say which are command-line
    options for it (`cli_field`)."""

    store: Path
    format: str | None = cli_field(None, "--format", "Which export to serve (default: onnx when it passed).")
    url: str | None = None
    timeout: float = 180.0
    workers: int | None = None
    batch_size: int | None = None
    max_batch_delay_ms: int | None = None
    threads: int | None = None
    token_file: str | None = None
    server_binary: str | None = None
    backend: str | None = None
    host: str = "127.0.0.1"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServerOptions(DeployOptions):
    """Options of a target that launches or talks to a server."""

    url: str | None = cli_field(None, "--url", "Use a running server at this URL instead of launching one.", commands=SERVER)
    timeout: float = cli_field(180.0, "--timeout", "Seconds to wait for the server and the model.", type=float, commands=SERVER)
    workers: int | None = cli_field(None, "--workers", "Workers (TorchServe) or model instances (Triton).", type=int)
    batch_size: int | None = cli_field(None, "--batch-size", "Server-side batch size (Triton: max_batch_size).", type=int)
    max_batch_delay_ms: int | None = cli_field(None, "--max-batch-delay", "Milliseconds to wait to fill a batch.", type=int)
    threads: int | None = cli_field(
        None, "--threads", "onnxruntime intra-op (or torch) threads per worker or instance; 0: the library's default.", type=int
    )
    repair: bool = cli_field(
        False,
        "--repair",
        "Reload every deployed model whose build sample is answered wrong or not at all, then probe it again.",
        is_flag=True,
        commands=("status",),
    )


@dataclass
class Request:
    """One request in the two forms a target may take: what an end user sends (`body`: image bytes or tensor JSON)
    and the model's own input tensors (what a tensor-level API such as Triton's v2 infer takes)."""

    body: bytes
    content_type: str
    description: str
    tensors: list[Any]


@dataclass(frozen=True)
class Served:
    """What a target serves of a build: the export format and its file, relative to the build folder (the kept ONNX
    variant's file when the build serves one). `Target.served` is the one place it is decided."""

    format: str
    file: str


@dataclass
class Endpoint:
    """One request to a deployed model as an HTTP client sends it (what `pack bench` replays under load)."""

    base_url: str
    path: str
    headers: dict[str, str]
    body: bytes
    payload: str  # what the body is, for the report
    compare_with: str  # the in-process row it is compared with
    pids: Callable[[], list[int]] = lambda: []


class Target:
    """Base of the targets: every method a target does not support refuses with one line."""

    name: ClassVar[str]
    Options: ClassVar[type[DeployOptions]] = DeployOptions
    description: ClassVar[str] = ""
    artifact: ClassVar[str] = ""  # what verify and inspect call the artifact it owns ("mar", "repository")
    packaged_by_build: ClassVar[bool] = False  # `pack build` writes its artifacts into every build folder

    def _unsupported(self, what: str) -> UsageError:
        return UsageError(f"the {self.name} target does not support {what}")

    def served(self, report: BuildReport, requested: str | None = None, supported: tuple[str, ...] | None = None) -> Served:
        """What this target serves of `report`: the `requested` format (else the first of SERVE_PREFERENCE that
        passed) and the file the report names for it (`BuildReport.served_file`: a kept ONNX variant's, else the
        export); `supported`: the formats this use of the target can load. Every target's archive, repository, model
        folder, KServe storage and deploy result, and bench's in-process rows, take their file from here; nothing else
        picks one."""
        from ..export import served_format

        fmt = served_format(report, requested, *([supported] if supported else []))  # one of report.artifacts, or one line
        return Served(fmt, report.served_file(fmt) or report.artifacts[fmt])

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

    def endpoint(self, deployed: dict[str, Any], report: BuildReport, store: Path, request: Request) -> Endpoint:
        """How a client sends `request` to the model that `deploy` returned (`pack bench` replays it under load)."""
        raise self._unsupported("bench")

    def kserve_storage(
        self, build_dir: Path, report: BuildReport, dest: Path, protocol: str, fmt: str | None, gpus: int
    ) -> tuple[str, Served]:
        """Lay out this server's files under `dest` as KServe's runtime for it mounts them; the model a client calls
        and what it serves (`served`)."""
        raise self._unsupported("KServe storage")


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


def cli_fields(options: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(options) if "cli" in f.metadata]


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
    "SERVER",
    "TARGETS",
    "DeployOptions",
    "Endpoint",
    "Request",
    "Served",
    "ServerOptions",
    "ServerTarget",
    "Target",
    "all_targets",
    "cli_field",
    "cli_fields",
    "get_target",
    "make_options",
    "names",
    "register_target",
]
