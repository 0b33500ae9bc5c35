"""The unit tier's rules, enforced: a unit test starts no `pack` subprocess, no interpreter, no shell and no server,
and exports no model (tests/helpers/unit_guard.py); the one build it may use is made without any exporter.

The guard is on while a unit test is set up (fixtures of every scope), runs and tears down its own fixtures; what it
refused fails the test even when the code under test caught the error.

`built("tiny")` here is the tiny model's build made without an exporter (tests/helpers/onnx_build.py): an ONNX graph
of the same shape written with onnx.helper, its samples, the targets' packaging and a report saved through
BuildReport. `tiny_store`, `tiny_build` and the other fixtures of tests/conftest.py take it through `built`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import unit_guard

unit_guard.install()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """A module- or session-scoped fixture is set up before `no_processes` turns the guard on: guard the whole setup
    (a failed setup never reaches `no_processes`, so the guard goes off again here)."""
    unit_guard.state["on"] = True
    unit_guard.take_refusals()
    try:
        result = yield
    except BaseException:
        unit_guard.state["on"] = False
        raise
    unit_guard.fail_on_refusals()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield
    unit_guard.fail_on_refusals()
    return result


@pytest.fixture(autouse=True)
def no_processes() -> Iterator[None]:
    unit_guard.state["on"] = True
    try:
        yield
    finally:
        unit_guard.state["on"] = False


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """built("tiny") -> the version folder of the tiny model's build made without an exporter (one per session; tests
    must not change it: copy it first, `tiny_store`). Any other model needs a real export: an integration test."""
    folder: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name != "tiny":
            unit_guard.refuse(f"a unit test asked for a build of {name!r}, which needs an export")
        if "tiny" not in folder:
            from tests.helpers.onnx_build import make_tiny_build

            folder["tiny"] = make_tiny_build(tmp_path_factory.mktemp("unit-store"))
        return folder["tiny"]

    return get
