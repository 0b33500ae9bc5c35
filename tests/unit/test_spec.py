"""pack.yaml (packager/build/spec.py and the plan it feeds): YAML and schema errors name the line or path, relative paths
are taken from the spec's folder, the command line overrides the spec, and spec-declared inputs and outputs are
checked against the model before anything is written. (Builds from a pack.yaml: tests/integration/test_spec_builds.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.build import spec as spec_mod
from packager.build.plan import resolve
from packager.errors import UsageError
from tests.helpers.cli import invoke
from tests.helpers.specs import SPEC, write_spec


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    spec = tmp_path / "pack.yaml"
    spec.write_text("name: x\ninputs: [\n  - {name: a\n")
    line = invoke("build", "--spec", str(spec)).error(2)
    assert "invalid YAML at line" in line


def test_schema_violation_names_the_path(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC.replace("shape: [2, 16], dtype: float32", "shape: [2, -16], dtype: float32"))
    line = invoke("build", "--spec", str(spec)).error(2)
    assert "inputs[1].shape[1]" in line and "-16" in line


def test_unknown_key_is_rejected_with_allowed_keys(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC + "    batchsize: 4\n")
    line = invoke("build", "--spec", str(spec)).error(2)
    assert "'batchsize' was unexpected" in line and "batch_sizes" in line


def test_first_error_is_named_and_the_rest_counted() -> None:
    with pytest.raises(UsageError) as info:
        spec_mod.check({"name": "bad name", "seed": -1, "opset": 99}, "pack.yaml")
    assert info.value.message.startswith("pack.yaml: ") and "(and 2 more)" in info.value.message
    with pytest.raises(UsageError, match="a spec must be a mapping"):
        spec_mod.check(["source", "tiny"], "pack.yaml")


def test_missing_and_binary_spec_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="spec file not found"):
        spec_mod.load(tmp_path / "nope.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UsageError, match="not a text file"):
        spec_mod.load(tmp_path / "bin.yaml")


def test_relative_paths_are_taken_from_the_spec_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    spec = folder / "pack.yaml"
    spec.write_text("source: nets/model.py:build\nweights: w/model.pt\nlabels: /abs/labels.txt\n")
    monkeypatch.chdir(tmp_path)  # somewhere else
    data = spec_mod.load(spec)
    assert data["source"] == f"{folder}/nets/model.py:build"
    assert data["weights"] == f"{folder}/w/model.pt" and data["labels"] == "/abs/labels.txt"
    spec.write_text("source: tiny\n")
    assert spec_mod.load(spec)["source"] == "tiny"  # a built-in name is not a path


def test_command_line_overrides_spec(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC)
    plan = resolve(None, str(spec), {"name": "tagger2", "version": "7", "batch_sizes": [2]})
    assert (plan.name, plan.version, plan.batch_sizes) == ("tagger2", "7", [2])
    from_spec = resolve(None, str(spec), {})
    assert (from_spec.name, from_spec.version, from_spec.batch_sizes) == ("tagger", "1", [1, 3])
    assert [i.name for i in from_spec.inputs] == ["tokens", "mask"] and from_spec.inputs[0].range == (0, 1000)
    assert [o.name for o in from_spec.outputs] == ["logits", "pooled"]
    assert from_spec.source == f"{tmp_path}/model.py:build" and from_spec.tolerance_given


def test_wrong_dtype_in_spec(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC.replace("dtype: int64", "dtype: float32"))
    line = invoke("build", "--spec", str(spec), "--store", str(tmp_path / "s")).error(2)
    assert "the model failed on example inputs" in line and "tokens [1, 16] float32" in line
    assert not (tmp_path / "s" / "tagger" / "1").exists()


def test_spec_output_count_must_match(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC.replace("      - {name: pooled}\n", ""))
    # torchscript alone: no torch.export capture before the check (it runs after the eager reference either way)
    line = invoke("build", "--spec", str(spec), "--store", str(tmp_path / "s"), "--formats", "torchscript").error(2)
    assert "names 1 outputs but the model returns 2" in line


def test_a_yaml_alias_bomb_is_refused_without_expanding(tmp_path: Path) -> None:
    import tracemalloc

    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 10)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\nsource: tiny\n")  # about 700 bytes, 20 million strings
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match="anchors and aliases are not accepted"):
            spec_mod.load(tmp_path / "bomb.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, peak


def test_an_input_fill_is_one_of_zeros_ones_random() -> None:
    from packager.build.spec import check

    inputs = [{"name": "src_key_padding_mask", "shape": [2, 8], "dtype": "bool", "fill": "zeros"}]
    assert check({"source": "tiny", "inputs": inputs}, "pack.yaml")["inputs"][0]["fill"] == "zeros"
    with pytest.raises(UsageError, match=r"inputs\[0\]\.fill: 'padded' is not one of"):
        check({"source": "tiny", "inputs": [{**inputs[0], "fill": "padded"}]}, "pack.yaml")
