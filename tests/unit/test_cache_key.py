"""The build cache's key (packager/build/cache.py): each thing that decides a build's bytes or its gate changes the key,
so a changed input never reuses a build (issue 25, item 1). The hits and misses of real builds are in
tests/integration/test_build_cache.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from packager.build import cache
from packager.build.plan import parse_input, resolve

OPTIONS = {"iterations": 0, "measure_budget_s": 3.0, "targets": ["fastapi", "torchserve", "triton"]}


def key(
    model: str,
    overrides: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    sd: str | None = None,
    modules: list[str] | None = None,
) -> str:
    plan = resolve(model, None, dict(overrides or {}))
    return cache.make_key(cache.key_components(plan, options or OPTIONS, sd, modules))


def test_the_same_inputs_give_the_same_key() -> None:
    assert key("tiny") == key("tiny")


@pytest.mark.parametrize(
    "overrides",
    [
        {"seed": 1},
        {"formats": "onnx"},
        {"version": "2"},
        {"name": "other"},
        {"atol": 0.5},
        {"batch_sizes": [1, 2]},
        {"device": "cpu"},
        {"opset": 17},
        {"torchscript": "script"},
        {"slim": True},
        {"variants": "ort-optimized"},
    ],
    ids=lambda o: next(iter(o)),
)
def test_each_part_of_the_plan_changes_the_key(overrides: dict[str, Any]) -> None:
    assert key("tiny", overrides) != key("tiny")


@pytest.mark.parametrize("option", [{"iterations": 5}, {"measure_budget_s": 1.0}, {"targets": ["triton"]}])
def test_each_build_option_changes_the_key(option: dict[str, Any]) -> None:
    assert key("tiny", options={**OPTIONS, **option}) != key("tiny")


def test_the_weights_file_is_keyed_by_its_bytes(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    first = key("tiny", {"weights": str(weights)})
    weights.write_bytes(b"two")
    assert key("tiny", {"weights": str(weights)}) != first != key("tiny")


def test_a_factory_is_keyed_by_its_file_the_modules_it_imported_and_its_state_dict(tmp_path: Path) -> None:
    factory = tmp_path / "net.py"
    factory.write_text("def build():\n    pass\n")
    layers = tmp_path / "layers.py"
    layers.write_text("SIZE = 4\n")
    source = f"{factory}:build"
    overrides = {"inputs": [parse_input("x:1x4")]}
    modules = [str(factory), str(layers)]
    first = key(source, overrides, sd="a" * 64, modules=modules)
    assert key(source, overrides, sd="b" * 64, modules=modules) != first  # same code, other weights (read from anywhere)
    layers.write_text("SIZE = 5\n")  # a module of its own it imported
    second = key(source, overrides, sd="a" * 64, modules=modules)
    assert second != first
    factory.write_text("def build():\n    return None\n")
    assert key(source, overrides, sd="a" * 64, modules=modules) != second
    (tmp_path / "store").mkdir()  # what it did not import (a store, pack's own generated model.py files) is not keyed
    (tmp_path / "store" / "model.py").write_text("x = 1\n")
    assert key(source, overrides, sd="a" * 64, modules=modules) == key(source, overrides, sd="a" * 64, modules=modules)


def test_the_modules_of_a_model_are_its_own_not_the_libraries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine_for_cache_test.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("mine_for_cache_test")
    found = cache.user_modules()
    assert str((tmp_path / "mine_for_cache_test.py").resolve()) in found
    assert not any("site-packages" in path or "/packager/" in path for path in found)


def test_pack_itself_the_libraries_and_the_device_are_keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    base = key("tiny")
    monkeypatch.setattr(cache, "pack_source_digest", lambda: "edited")
    assert key("tiny") != base
    monkeypatch.undo()
    monkeypatch.setattr(cache, "distributions", lambda: "onnxruntime==0.0")
    assert key("tiny") != base
    monkeypatch.undo()
    monkeypatch.setattr(cache, "device_probe", lambda requested: "auto; gpus 0000:01:00.0")
    assert key("tiny") != base


def test_the_cache_folder_follows_the_option_then_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    assert cache.cache_dir(tmp_path, None, True) == tmp_path / ".cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "shared"))
    assert cache.cache_dir(tmp_path, None, True) == tmp_path / "shared"
    assert cache.cache_dir(tmp_path, str(tmp_path / "cli"), True) == tmp_path / "cli"
    assert cache.cache_dir(tmp_path, str(tmp_path / "cli"), False) is None


def test_a_cache_others_may_write_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An entry's digests prove it whole, not who wrote it: a folder others may write to could hold a planted build."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    assert cache.trusted(shared) and cache.trusted(tmp_path / "new")
    shared.chmod(0o777)
    assert not cache.trusted(shared) and "others may write to it" in caplog.text
    (shared / ("a" * 64)).mkdir()
    (shared / ("a" * 64) / "report.json").write_text("{}")
    assert cache.restore(shared, "a" * 64, tmp_path) is None
