"""What only some targets do, each a typed protocol, and how the rest of pack finds the targets that do it.

`Target` (base.py) is what every target is: deploy, status, undeploy, stop, and the artifacts it owns. A target has
one of these capabilities by defining its members:

    Tunable            `pack tune`: the settings it may search, and writing the best into the build
    Archiver           `pack archive`: (re)write its archive of an existing build
    RepositoryWriter   `pack repo`: write a build's entries into the store's model repository
    RepositoryChecker  `pack check-repo`: check a model repository offline
    ManifestChecker    `pack check-manifest`: check a manifest offline
    StorageLayout      a KServe runtime of this server: its storage folder, and how KServe runs it
    Benchable          `pack bench` and `pack tune`: its bench profile and the request a client sends it
    Migratable         `pack migrate`: read its server's model format, and ask a running old endpoint

The CLI, bench, tune and the KServe target ask the registry (base.py) which targets have one (`capable(TUNABLE)`:
name -> target, in the registry's order), or take one target as having it (`require(TUNABLE, target)`, refused in
one line when it does not): their choices, rows and runtimes come from the registry, and no target's name is written
outside its own package and the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeGuard, TypeVar, runtime_checkable

from ..report.build_report import BuildReport
from ..report.formats import Served
from .migration import Extracted, MigrationSource

C = TypeVar("C")


# ---------------------------------------------------------------- what bench and tune need of a target


@dataclass
class Request:
    """One request in the two forms a target may take: what an end user sends (`body`: image bytes or tensor JSON)
    and the model's own input tensors (what a tensor-level API such as Triton's v2 infer takes)."""

    body: bytes
    content_type: str
    description: str
    tensors: list[Any]


@dataclass
class Endpoint:
    """One request to a deployed model as an HTTP client sends it (what `pack bench` replays under load)."""

    base_url: str
    path: str
    headers: dict[str, str]
    body: bytes
    payload: str  # what the body is, for the report
    compare_with: str  # the in-process row it is compared with
    pids: Callable[[], list[int]] = lambda: []  # the server's processes, for its memory


@dataclass(frozen=True)
class BenchProfile:
    """How `pack bench` and `pack tune` measure a target (docs/bench.md): what it is deployed with unless told
    otherwise, which settings a flag or a tune point may give it, what runs the model behind it, and what it is sent."""

    runtime: str  # what runs the model behind the server ("TorchServe workers"): a row says "<runtime of the format> in ..."
    work: str  # what the server does for one request
    defaults: dict[str, Any]  # deploy options (packager/serve/settings.py's names) unless a flag or `pack tune` says otherwise
    settings: tuple[str, ...]  # the options a bench flag or a tune point may set (deploy option names)
    tensors: bool = False  # sent the model's pre-processed tensors (else what an end user sends)
    load_timings: tuple[str, ...] = ()  # the deploy timings that add up to its model load (a cold start's `load_s`)
    goal: float | None = None  # the peak throughput it should reach against the in-process row it is compared with
    same_runtime: str | None = None  # the in-process row that runs the same runtime on the same request
    http_baseline: bool = False  # the plain-HTTP row every other server is also compared with


@dataclass(frozen=True)
class KServeRuntime:
    """How KServe runs a server: the modelFormat its ClusterServingRuntime matches, that runtime's name, the inference
    protocols it speaks (the first is the default), its readiness path per protocol (`{model}`: the served model),
    and the predictor container's extra arguments."""

    model_format: str
    runtime: str
    protocols: tuple[str, ...]
    ready: dict[str, str]
    args: tuple[str, ...] = ()


# ---------------------------------------------------------------- the capabilities


@runtime_checkable
class Tunable(Protocol):
    def tuning_space(self, report: BuildReport) -> tuple[dict[str, list[Any]], dict[str, Any]]:
        """({setting: candidate values in search order}, the start: what the build serves now), in deploy option
        names."""
        ...

    def adopt_settings(self, build_dir: Path, report: BuildReport, settings: dict[str, Any], tuned: dict[str, Any]) -> list[str]:
        """Write `settings` into the build's artifacts (checked offline, atomic, under the model's lock) and record
        `tuned` (what was measured); the build-relative files written."""
        ...


@runtime_checkable
class Archiver(Protocol):
    def archive(self, build_dir: Path, report: BuildReport, opts: Any) -> dict[str, Any]:
        """(Re)write the target's archive of the build and its report entries, atomically."""
        ...


@runtime_checkable
class RepositoryWriter(Protocol):
    def repo(self, build_dir: Path, report: BuildReport, opts: Any) -> dict[str, Any]:
        """Write the build's entries into the store's model repository, checked offline, atomically."""
        ...


@runtime_checkable
class RepositoryChecker(Protocol):
    def check_repo(self, path: Path) -> dict[str, Any]:
        """A model repository checked offline: `problems` (each with `severity`, `model`, `message`) and a summary."""
        ...


@runtime_checkable
class ManifestChecker(Protocol):
    def check_manifest(self, path: Path) -> dict[str, Any]:
        """Every document of a manifest file checked offline: `documents`, each with its `problems`."""
        ...


@runtime_checkable
class StorageLayout(Protocol):
    @property
    def kserve(self) -> KServeRuntime: ...

    def kserve_storage(
        self, build_dir: Path, report: BuildReport, dest: Path, protocol: str, fmt: str | None, gpus: int
    ) -> tuple[str, Served]:
        """Lay out this server's files under `dest` as KServe's runtime for it mounts them; the model a client calls
        and what it serves."""
        ...


@runtime_checkable
class Benchable(Protocol):
    @property
    def bench(self) -> BenchProfile: ...

    def endpoint(self, deployed: dict[str, Any], report: BuildReport, store: Path, request: Request) -> Endpoint:
        """How a client sends `request` to the model that `deploy` returned (`deployed`)."""
        ...


@runtime_checkable
class Migratable(Protocol):
    def read_source(self, path: Path) -> MigrationSource | None:
        """The facts of `path` when it is this server's model format (None when it is not), read without running or
        unpickling anything of it; a damaged source of its format is refused in one line."""
        ...

    def extract_source(self, source: MigrationSource, dest: Path) -> Extracted:
        """Write the files a build needs under `dest` (names and sizes of the source never trusted)."""
        ...

    def run_old(self, source: MigrationSource, found: Extracted, request: Request, model: Any = None) -> Any:
        """The old server's own answer to `request` computed in this process (its handler's steps around its model,
        or around `model`: numpy arrays in, numpy arrays out); None where the server has no steps of its own to run
        here (pack then runs the model alone)."""
        ...

    def ask_old(self, url: str, model: str, source: MigrationSource, request: Request, token: str | None) -> Any:
        """The answer of the old endpoint at `url` serving `model` to `request`, as its own clients read it (parsed
        JSON, or {output name: array} for a tensor answer)."""
        ...


class Capability(Generic[C]):
    """One optional capability: its protocol, and what a target without it cannot do (the words of the refusal)."""

    def __init__(self, protocol: type[Any], what: str) -> None:
        self.protocol = protocol
        self.what = what

    def holds(self, target: object) -> TypeGuard[C]:
        return isinstance(target, self.protocol)


TUNABLE = Capability[Tunable](Tunable, "pack tune")
ARCHIVER = Capability[Archiver](Archiver, "pack archive")
REPOSITORY_WRITER = Capability[RepositoryWriter](RepositoryWriter, "pack repo")
REPOSITORY_CHECKER = Capability[RepositoryChecker](RepositoryChecker, "pack check-repo")
MANIFEST_CHECKER = Capability[ManifestChecker](ManifestChecker, "pack check-manifest")
STORAGE_LAYOUT = Capability[StorageLayout](StorageLayout, "a KServe runtime")
BENCHABLE = Capability[Benchable](Benchable, "pack bench")
MIGRATABLE = Capability[Migratable](Migratable, "pack migrate")


__all__ = [
    "ARCHIVER",
    "BENCHABLE",
    "MANIFEST_CHECKER",
    "MIGRATABLE",
    "REPOSITORY_CHECKER",
    "REPOSITORY_WRITER",
    "STORAGE_LAYOUT",
    "TUNABLE",
    "Archiver",
    "BenchProfile",
    "Benchable",
    "Capability",
    "Endpoint",
    "KServeRuntime",
    "ManifestChecker",
    "Migratable",
    "Request",
    "RepositoryChecker",
    "RepositoryWriter",
    "StorageLayout",
    "Tunable",
]
