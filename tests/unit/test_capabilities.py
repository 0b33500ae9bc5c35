"""What only some targets do is found in the registry (packager/targets/capabilities.py): each capability's targets,
the one-line refusal of a target without it, and the CLI's choices, bench's rows, tune's targets and KServe's runtimes
derived from it, so a new target with a capability is found with no other change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest

from packager.errors import UsageError
from packager.targets import (
    ARCHIVER,
    BENCHABLE,
    MANIFEST_CHECKER,
    REPOSITORY_CHECKER,
    REPOSITORY_WRITER,
    STORAGE_LAYOUT,
    TUNABLE,
    BenchProfile,
    capable,
    get_target,
    names,
    require,
    sole,
)
from packager.targets import base as registry
from packager.targets.capabilities import Capability
from tests.helpers.cli import command_named, invoke


@pytest.mark.parametrize(
    "capability, targets",
    [
        (TUNABLE, ["triton", "torchserve"]),
        (ARCHIVER, ["torchserve"]),
        (REPOSITORY_WRITER, ["triton"]),
        (REPOSITORY_CHECKER, ["triton"]),
        (MANIFEST_CHECKER, ["kserve"]),
        (STORAGE_LAYOUT, ["triton", "torchserve"]),
        (BENCHABLE, ["triton", "torchserve", "fastapi"]),
    ],
)
def test_each_capability_is_found_in_the_registry_in_its_order(capability: Capability[Any], targets: list[str]) -> None:
    assert list(capable(capability)) == targets
    assert all(capable(capability)[n] is get_target(n) for n in targets)


def test_each_target_has_its_capabilities_as_typed() -> None:
    """mypy holds each target class against the protocols it has (a changed signature fails the type check)."""
    from packager.targets.capabilities import (
        Archiver,
        Benchable,
        ManifestChecker,
        RepositoryChecker,
        RepositoryWriter,
        StorageLayout,
        Tunable,
    )
    from packager.targets.fastapi.target import FastAPITarget
    from packager.targets.kserve.target import KServeTarget
    from packager.targets.torchserve.target import TorchServeTarget
    from packager.targets.triton.target import TritonTarget

    triton: tuple[Tunable, RepositoryWriter, RepositoryChecker, StorageLayout, Benchable] = (TritonTarget(),) * 5
    torchserve: tuple[Tunable, Archiver, StorageLayout, Benchable] = (TorchServeTarget(),) * 4
    fastapi: Benchable = FastAPITarget()
    kserve: ManifestChecker = KServeTarget()
    claimed = [
        *zip(triton, (Tunable, RepositoryWriter, RepositoryChecker, StorageLayout, Benchable), strict=True),
        *zip(torchserve, (Tunable, Archiver, StorageLayout, Benchable), strict=True),
        (fastapi, Benchable),
        (kserve, ManifestChecker),
    ]
    assert all(isinstance(target, protocol) for target, protocol in claimed)  # and at run time, as the registry asks


def test_a_target_without_a_capability_is_refused_in_one_line() -> None:
    assert require(TUNABLE, get_target("triton")) is get_target("triton")
    with pytest.raises(UsageError) as caught:
        require(TUNABLE, get_target("kserve"))
    assert caught.value.line() == "the kserve target does not support pack tune; use triton or torchserve"


def _choices(command: str, flag: str) -> click.Option:

    return next(p for p in command_named(command).params if isinstance(p, click.Option) and flag in p.opts)


def test_the_cli_takes_its_choices_and_defaults_from_the_registry() -> None:
    target = _choices("deploy", "--target")
    assert isinstance(target.type, click.Choice) and list(target.type.choices) == names() and target.default == names()[0]
    tune = _choices("tune", "--target")
    assert isinstance(tune.type, click.Choice) and list(tune.type.choices) == list(capable(TUNABLE))
    assert _choices("bench", "--targets").default == ",".join(["inprocess", *capable(BENCHABLE)])
    runtime = _choices("deploy", "--runtime")
    assert isinstance(runtime.type, click.Choice) and list(runtime.type.choices) == list(capable(STORAGE_LAYOUT))


def test_tune_refuses_a_target_it_cannot_tune(tmp_path: Path) -> None:
    assert "--target" in invoke("tune", "tiny", "--target", "fastapi", "--store", str(tmp_path)).error(2)


class _Newcomer:
    """A target registered beside the others, with a bench profile and the tuning methods: nothing else changes."""

    name = "newcomer"
    bench = BenchProfile(runtime="its workers", work="all of it", defaults={"workers": 1}, settings=("workers",))

    def endpoint(self, deployed: Any, report: Any, store: Path, request: Any) -> Any:
        raise AssertionError("not called here")

    def tuning_space(self, report: Any) -> tuple[dict[str, list[Any]], dict[str, Any]]:
        return {"workers": [1, 2]}, {"workers": 1}

    def adopt_settings(self, build_dir: Path, report: Any, settings: dict[str, Any], tuned: dict[str, Any]) -> list[str]:
        return []


def test_a_new_target_with_a_capability_is_found_with_no_other_change(monkeypatch: pytest.MonkeyPatch) -> None:
    from packager.bench import bench_targets

    known = registry.all_targets()
    monkeypatch.setattr(registry, "all_targets", lambda: [*known, _Newcomer()])
    assert list(capable(TUNABLE)) == ["triton", "torchserve", "newcomer"]
    assert bench_targets() == ["inprocess", "triton", "torchserve", "fastapi", "newcomer"]
    assert list(capable(ARCHIVER)) == ["torchserve"]


def test_a_command_of_one_capability_fails_loudly_when_two_targets_have_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sole(ARCHIVER) is get_target("torchserve")
    known = registry.all_targets()
    twin = type("Twin", (), {"name": "twin", "archive": lambda self, *a: {}})()
    monkeypatch.setattr(registry, "all_targets", lambda: [*known, twin])
    with pytest.raises(RuntimeError, match="2 registered targets support pack archive; the command needs --target"):
        sole(ARCHIVER)
