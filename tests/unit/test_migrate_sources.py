"""Migration sources read without running their code (packager/migrate/source.py, the targets' migration readers):
the handler decides the task and the answers compared, archive code is refused without trust (exit 2), damaged or
unmigratable sources are one line with their exit code, and each agreement check of the proof can fail."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from packager.errors import UsageError, ValidationFailed
from packager.migrate import proof
from packager.migrate.source import read, require_trust
from packager.targets.capabilities import Request

MANIFEST = "MAR-INF/MANIFEST.json"
MODEL = "from torch import nn\n\n\nclass Net(nn.Module):\n    pass\n"


def make_mar(tmp_path: Path, model: dict[str, object], members: dict[str, str] | None = None) -> Path:
    path = tmp_path / "m.mar"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(MANIFEST, json.dumps({"model": {"modelName": "m", **model}}))
        for name, text in (members or {"model.pt": "x"}).items():
            zf.writestr(name, text)
    return path


def test_torchscript_builtin_classifier_needs_no_trust(tmp_path: Path) -> None:
    members = {"model.pt": "x", "index_to_name.json": json.dumps({"0": "cat", "1": ["n02", "dog"]})}
    src, reader = read(make_mar(tmp_path, {"handler": "image_classifier", "serializedFile": "model.pt"}, members))
    assert (reader, src.task, src.answers, src.torchscript, src.archive_code) == (
        "torchserve",
        "image-classification",
        "classes",
        True,
        (),
    )
    assert src.labels == ["cat", "dog"] and src.inputs[0]["shape"] == [1, 3, 224, 224] and src.top_k == 5
    require_trust(src, trusted=False)


def test_eager_model_file_is_archive_code(tmp_path: Path) -> None:
    members = {"model.pt": "x", "net.py": MODEL}
    src, _ = read(
        make_mar(tmp_path, {"handler": "image_segmenter", "serializedFile": "model.pt", "modelFile": "net.py"}, members)
    )
    assert (src.answers, src.torchscript, src.model_class) == ("segments", False, "Net")
    with pytest.raises(UsageError, match="net.py") as err:
        require_trust(src, trusted=False)
    assert err.value.exit_code == 2 and "--trust-archive-code" in err.value.line()
    require_trust(src, trusted=True)


def test_custom_handler_is_archive_code_only_when_its_steps_run(tmp_path: Path) -> None:
    src, _ = read(make_mar(tmp_path, {"handler": "h.py", "serializedFile": "model.pt"}, {"model.pt": "x", "h.py": "import os"}))
    assert (src.task, src.answers, src.archive_code, src.inputs) == ("generic", "custom", ("h.py",), [])
    assert any("h.py" in note for note in src.notes)
    require_trust(src, trusted=False)  # a TorchScript model compared alone: nothing of the archive runs
    with pytest.raises(UsageError, match="h.py"):
        require_trust(src, trusted=False, steps=True)  # its handler's steps around both models


def test_settings_carried_from_model_config(tmp_path: Path) -> None:
    members = {"model.pt": "x", "c.yaml": "minWorkers: 2\nbatchSize: 8\nmaxBatchDelay: 50\nmaxWorkers: 4\n"}
    src, _ = read(
        make_mar(tmp_path, {"handler": "image_classifier", "serializedFile": "model.pt", "configFile": "c.yaml"}, members)
    )
    assert src.settings == {"batch_size": 8, "max_batch_delay_ms": 50, "workers": 2}


@pytest.mark.parametrize(
    "model, members, error, match",
    [
        ({"handler": "image_classifier", "serializedFile": "gone.pt"}, None, ValidationFailed, "lacks"),
        ({"handler": "image_classifier"}, None, ValidationFailed, "serializedFile"),
        ({"handler": "image_classifier", "serializedFile": "m.onnx"}, {"m.onnx": "x"}, UsageError, "today's format"),
        (
            {"handler": "x.py", "serializedFile": "model.pt", "modelFile": "a.py"},
            {"model.pt": "", "x.py": "", "a.py": "class A: pass\nclass B: pass\n"},
            ValidationFailed,
            "exactly one",
        ),  # fmt: skip
        (
            {"handler": "x.py", "serializedFile": "model.pt", "modelFile": "a.py"},
            {"model.pt": "", "x.py": "", "a.py": "def ("},
            ValidationFailed,
            "not valid Python",
        ),  # fmt: skip
        (
            {"handler": "image_classifier", "serializedFile": "model.pt"},
            {"model.pt": "", "index_to_name.json": '{"1": "a"}'},
            ValidationFailed,
            "every class",
        ),  # fmt: skip
    ],
)
def test_damaged_or_unmigratable_archive_is_one_line(
    tmp_path: Path, model: dict, members: dict | None, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        read(make_mar(tmp_path, model, members))


def test_a_file_that_is_no_source_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    for path in (tmp_path / "notes.txt", tmp_path / "missing.mar", tmp_path):
        with pytest.raises(UsageError) as err:
            read(path)
        assert err.value.exit_code == 2


def _triton(tmp_path: Path, config: str) -> Path:
    entry = tmp_path / "m"
    (entry / "1").mkdir(parents=True)
    (entry / "1" / "model.pt").write_bytes(b"x")
    (entry / "config.pbtxt").write_text(config)
    return entry


def test_triton_libtorch_folder(tmp_path: Path) -> None:
    entry = _triton(
        tmp_path,
        'platform: "pytorch_libtorch"\nmax_batch_size: 4\ninput [{ name: "INPUT__0" data_type: TYPE_FP32 dims: [3, 8] }]\n'
        'output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [2] }]\ninstance_group [{ count: 3 kind: KIND_CPU }]\n',
    )
    src, reader = read(entry)
    assert reader == "triton" and src.inputs == [
        {"name": "INPUT__0", "dtype": "float32", "shape": [1, 3, 8], "dynamic_axes": [0]}
    ]
    assert (src.outputs, src.settings, src.torchscript) == (["OUTPUT__0"], {"batch_size": 4, "workers": 3}, True)


@pytest.mark.parametrize(
    "config, match",
    [
        ('platform: "pytorch_libtorch"\ninput [{ name: "x" data_type: TYPE_FP32 dims: [-1] }]\n', "variable dimension"),
        ('platform: "onnxruntime_onnx"\n', "today's format"),
        ('backend: "python"\n', "pytorch_libtorch"),
    ],
)
def test_triton_folder_refusals(tmp_path: Path, config: str, match: str) -> None:
    with pytest.raises(UsageError, match=match) as err:
        read(_triton(tmp_path, config))
    assert err.value.exit_code == 2
    if "variable" in match:
        assert "--input x:SHAPE" in err.value.line()


# ---------------------------------------------------------------- each agreement check can fail


def _req() -> Request:
    return Request(b"", "image/jpeg", "an image", [])


def test_classes_agree_and_disagree() -> None:
    logits = np.array([[3.0, 1.0, 0.5, 0.2, 0.1, 0.0]])
    old = proof.classes(logits, ["a", "b", "c", "d", "e", "f"], 5)
    assert proof.judge("classes", _req(), old, [logits], ["y"], ["a", "b", "c", "d", "e", "f"], (1e-4, 1e-3)).agree
    shifted = logits + np.array([[0.0, 0.3, 0, 0, 0, 0]])
    verdict = proof.judge("classes", _req(), old, [shifted], ["y"], ["a", "b", "c", "d", "e", "f"], (1e-4, 1e-3))
    assert not verdict.agree and "vs" in verdict.detail
    other_top = np.array([[0.0, 1.0, 0.5, 0.2, 0.1, 3.0]])
    assert not proof.judge("classes", _req(), old, [other_top], ["y"], ["a", "b", "c", "d", "e", "f"], (1e-4, 1e-3)).agree
    assert not proof.judge("classes", _req(), "not a dict", [logits], ["y"], None, (1e-4, 1e-3)).agree


def test_segments_disagree_on_classes_and_probabilities() -> None:
    rng = np.random.default_rng(0)
    out = rng.standard_normal((1, 4, 6, 6))
    old = proof.segments(out).tolist()
    assert proof.judge("segments", _req(), old, [out], ["y"], None, (1e-4, 1e-3)).agree
    flipped = out.copy()
    flipped[0, :, 0, :] = flipped[0, ::-1, 0, :]
    assert not proof.judge("segments", _req(), old, [flipped], ["y"], None, (1e-4, 1e-3)).agree
    assert not proof.judge("segments", _req(), old, [out * 1.1], ["y"], None, (1e-4, 1e-3)).agree
    assert not proof.judge("segments", _req(), old, [out[:, :, :3]], ["y"], None, (1e-4, 1e-3)).agree


def test_tensors_disagree_on_values_shapes_and_counts() -> None:
    a = np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 4)
    assert proof.judge("tensors", _req(), [a], [a + 1e-6], ["y"], None, (1e-4, 1e-3)).agree
    assert not proof.judge("tensors", _req(), [a], [a + 1e-2], ["y"], None, (1e-4, 1e-3)).agree
    assert not proof.judge("tensors", _req(), [a], [a.reshape(4, 2)], ["y"], None, (1e-4, 1e-3)).agree
    assert not proof.judge("tensors", _req(), {"y": a}, [a, a], ["y", "z"], None, (1e-4, 1e-3)).agree


def test_boxes_agree_and_disagree() -> None:
    names = ["0.boxes", "0.labels", "0.scores"]
    new = [np.array([[10.0, 10, 50, 50], [0, 0, 5, 5]]), np.array([1, 2]), np.array([0.9, 0.2])]
    labels = ["background", "cat", "dog"]
    old = [{"cat": [10.0, 10.0, 50.0, 50.0], "score": 0.9}]
    assert proof.judge("boxes", _req(), old, new, names, labels, (1e-4, 1e-3)).agree
    moved = [{"cat": [14.0, 10.0, 50.0, 50.0], "score": 0.9}]
    assert not proof.judge("boxes", _req(), moved, new, names, labels, (1e-4, 1e-3)).agree
    relabelled = [{"dog": [10.0, 10.0, 50.0, 50.0], "score": 0.9}]
    assert not proof.judge("boxes", _req(), relabelled, new, names, labels, (1e-4, 1e-3)).agree
    assert not proof.judge("boxes", _req(), [], new, names, labels, (1e-4, 1e-3)).agree  # the build finds one more
    assert not proof.judge("boxes", _req(), {"cat": 1}, new, names, labels, (1e-4, 1e-3)).agree


def test_json_answers_agree_and_disagree() -> None:
    old = [{"World": 0.5, "Sports": 0.25}, [1, "a"]]
    assert proof.judge("json", _req(), old, [{"World": 0.5001, "Sports": 0.25}, [1, "a"]], [], None, (1e-4, 1e-3)).agree
    for new in (
        [{"World": 0.6, "Sports": 0.25}, [1, "a"]],  # a number past the tolerance
        [{"World": 0.5, "Business": 0.25}, [1, "a"]],  # another key
        [{"World": 0.5, "Sports": 0.25}, [1, "b"]],  # another string
        [{"World": 0.5, "Sports": 0.25}],  # fewer items
        [{"World": True, "Sports": 0.25}, [1, "a"]],  # a bool is no number
    ):
        assert not proof.judge("json", _req(), old, new, [], None, (1e-4, 1e-3)).agree


def test_classes_of_a_thousand_are_compared_as_closely_as_two() -> None:
    """Scale-aware: 1,000 classes of about 0.001 each, 5% apart, disagree (an absolute 0.002 would let them pass)."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((1, 1000)) * 0.1
    old = proof.classes(logits, None, 5)
    assert proof.judge("classes", _req(), old, [logits], ["y"], None, (1e-4, 1e-3)).agree
    other = logits + rng.standard_normal((1, 1000)) * 0.05
    assert not proof.judge("classes", _req(), old, [other], ["y"], None, (1e-4, 1e-3)).agree


def test_torch_model_archivers_three_forms_read_alike(tmp_path: Path) -> None:
    """A .mar, its tgz (the files under one folder named after the model) and its no-archive folder; a member that is
    a link or names a path outside is never read; a truncated .mar is exit 3."""
    import tarfile

    members = {"model.pt": "x", "index_to_name.json": json.dumps({"0": "cat"})}
    mar = make_mar(tmp_path, {"handler": "image_classifier", "serializedFile": "model.pt"}, members)
    folder = tmp_path / "m"
    with zipfile.ZipFile(mar) as zf:
        zf.extractall(folder)
    tgz = tmp_path / "m.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(folder, arcname="m")
        link = tarfile.TarInfo("m/evil.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        outside = tarfile.TarInfo("../outside.json")
        outside.size = 2
        tf.addfile(outside, io.BytesIO(b"{}"))
    kinds = []
    for path in (mar, tgz, folder):
        src, reader = read(path)
        assert (reader, src.labels, src.serialized_file, src.torchscript) == ("torchserve", ["cat"], "model.pt", True)
        kinds.append(src.kind)
    assert [k.split(" (")[0] for k in kinds] == [
        "TorchServe .mar",
        "TorchServe .tar.gz model archive",
        "TorchServe model archive folder",
    ]
    from packager.targets.torchserve.members import open_members

    with open_members(tgz) as files:
        assert sorted(files.names) == ["MAR-INF/MANIFEST.json", "index_to_name.json", "model.pt"]
    truncated = tmp_path / "cut.mar"
    truncated.write_bytes(mar.read_bytes()[:40])
    with pytest.raises(ValidationFailed, match="truncated"):
        read(truncated)


def test_a_handler_function_entry_point_names_its_file(tmp_path: Path) -> None:
    members = {"model.pt": "x", "h.py": "def handle(data, context):\n    return data\n"}
    src, _ = read(make_mar(tmp_path, {"handler": "h.py:handle", "serializedFile": "model.pt"}, members))
    assert (src.answers, src.archive_code) == ("custom", ("h.py",))


def test_the_old_models_outputs_are_named_and_ordered_as_the_build_does() -> None:
    """A detector's list of dicts flattens as build/modelio.py flattens it (never an error)."""
    import torch

    from packager.migrate.run import _model_outputs

    boxes, labels = torch.zeros(2, 4), torch.tensor([1, 2])
    out = _model_outputs([{"boxes": boxes, "labels": labels}])
    assert [o.shape for o in out] == [(2, 4), (2,)] and out[1].tolist() == [1, 2]


def test_extraction_removes_what_a_killed_migration_left(tmp_path: Path) -> None:
    from packager.migrate.source import extract

    src, reader = read(make_mar(tmp_path, {"handler": "image_classifier", "serializedFile": "model.pt"}))
    left = tmp_path / "store" / ".migrations" / ".tmp-0123456789abcdef-999999999"  # a pid no process has
    left.mkdir(parents=True)
    found = extract(src, reader, tmp_path / "store")
    assert found.model.read_bytes() == b"x" and not left.exists()
    assert [p.name for p in (tmp_path / "store" / ".migrations").iterdir()] == [src.sha256[:16]]
