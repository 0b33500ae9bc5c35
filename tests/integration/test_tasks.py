"""The task registry (packager/serve/tasks.py) and the one serving runtime it ships: which handler, Triton steps and smoke
sample each kind of build gets, a newly registered task taking effect everywhere, and the .mar and the Triton
repository carrying byte-identical copies of the same runtime files (no server needed)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from packager.report.build_report import BuildReport
from tests.helpers import ROOT
from tests.helpers.reports import make_report

IMAGE_INPUT = [{"name": "images", "shape": [1, 3, 64, 64], "dtype": "float32", "dynamic_axes": [0]}]


def test_builds_are_served_by_their_task():
    from packager.bench.inprocess import handler_file, is_image_model
    from packager.serve import tasks
    from packager.targets.torchserve.mar import choose_handler
    from packager.targets.triton.repository import is_detection, model_names

    yolo = {"name": "det", "task": "object-detection", "postprocessing": {"format": "yolov8"}, "inputs": IMAGE_INPUT}
    classifier = {"name": "cls", "task": "image-classification", "inputs": IMAGE_INPUT}
    torchvision_detector = {"name": "frcnn", "task": "object-detection", "postprocessing": {}, "inputs": IMAGE_INPUT}
    token_classifier = {
        "name": "bert",
        "task": "image-classification",
        "inputs": [{"name": "ids", "shape": [1, 16], "dtype": "int64"}],
    }
    expected = {
        "det": ("yolo-detection", "pack_detector.py", tasks.IMAGE, ["det_preprocess", "det", "det_postprocess", "det_ensemble"]),
        "cls": ("image-classification", "pack_classifier.py", tasks.IMAGE, ["cls"]),
        "frcnn": ("generic", "pack_tensors.py", tasks.TENSORS, ["frcnn"]),
        "bert": ("generic", "pack_tensors.py", tasks.TENSORS, ["bert"]),
    }
    for fields in (yolo, classifier, torchvision_detector, token_classifier):
        report = make_report(**fields)
        task = tasks.task_for(report)
        name, handler, sample, entries = expected[report.name]
        assert (task.name, task.handler, task.sample, model_names(report, "onnxruntime")) == (name, handler, sample, entries)
        one = [n for n in entries if not n.endswith(("_preprocess", "_postprocess"))]  # the python backend: one instance
        assert model_names(report, "python") == one, report.name
        assert choose_handler(report) == handler_file(report) == handler
        assert is_image_model(report) == (sample == tasks.IMAGE)
        assert is_detection(report) == (task.triton is not None)
    steps = tasks.task_for(make_report(**yolo)).triton
    assert (steps.preprocess, steps.postprocess) == ("pack_triton_yolo_pre.py", "pack_triton_yolo_post.py")


def test_a_registered_task_takes_effect_in_every_target(monkeypatch):
    """Room for new tasks: one registered entry changes the .mar handler, the Triton entries and the bench sample."""
    from packager.bench.inprocess import is_image_model
    from packager.serve import tasks
    from packager.targets.torchserve.mar import choose_handler
    from packager.targets.triton.repository import ENSEMBLES, model_names

    monkeypatch.setattr(tasks.TASKS, "_entries", dict(tasks.TASKS._entries))
    segmenter = tasks.register_task(
        tasks.Task(
            name="yolo-segmentation",
            handler="pack_tensors.py",
            sample=tasks.IMAGE,
            report_task="instance-segmentation",
            triton=tasks.TritonSteps("pack_triton_yolo_pre.py", "pack_triton_yolo_post.py", layout="yolo"),
            image_input=True,
        )
    )
    fields = {"name": "seg", "task": "instance-segmentation", "inputs": IMAGE_INPUT}
    report = make_report(**fields)
    assert tasks.task_for(report) is segmenter and tasks.get_task("yolo-segmentation") is segmenter
    assert choose_handler(report) == "pack_tensors.py" and is_image_model(report)
    assert model_names(report, "onnxruntime") == ["seg_preprocess", "seg", "seg_postprocess", "seg_ensemble"]
    assert model_names(report, "python") == ["seg", "seg_ensemble"]
    assert segmenter.triton.layout in ENSEMBLES
    with pytest.raises(ValueError, match="registered twice"):
        tasks.register_task(segmenter)
    assert tasks.task_for(make_report(**{**fields, "task": "other"})).name == "generic"


def test_the_registry_does_not_import_torch():
    code = (
        "import sys, packager.serve.tasks, packager.targets.torchserve.mar, packager.targets.triton.repository;"
        " print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_torchserve_and_triton_ship_the_same_runtime_files(built, tmp_path):
    """A detection build's .mar and its Triton entries carry byte-identical copies of the runtime's files, found with
    importlib.resources; letterbox, YOLO decoding and NMS are defined once, in pack_images.py."""
    import importlib.resources

    from packager.targets.torchserve.config import settings_from
    from packager.targets.torchserve.mar import write_mar
    from packager.targets.triton.repository import RepoOptions, generate

    build = built("tiny")
    report = json.loads((build / "report.json").read_text())
    report = BuildReport.from_dict({**report, "task": "object-detection", "postprocessing": {"format": "yolov8"}})
    runtime = importlib.resources.files("handlers")
    assert Path(str(runtime)).resolve() == (ROOT / "handlers").resolve()  # this checkout's package, not a copy

    mar = tmp_path / "tiny.mar"
    write_mar(build, report, settings_from(report, "onnx"), mar)
    with zipfile.ZipFile(mar) as zf:
        shipped = {n: zf.read(n) for n in zf.namelist() if n.endswith(".py")}
        assert json.loads(zf.read("MAR-INF/MANIFEST.json"))["model"]["handler"] == "pack_detector.py"
    assert sorted(shipped) == [
        "pack_detector.py",
        "pack_images.py",
        "pack_requests.py",
        "pack_runtime.py",
        "pack_signature.py",
        "pack_torchserve.py",
    ]

    generate(build, report, RepoOptions(backend="python"), tmp_path / "python")
    generate(build, report, RepoOptions(backend="onnxruntime"), tmp_path / "onnxruntime")
    runs_the_model = (
        "pack_triton_model.py",
        ["model.onnx", "model.py", "pack_images.py", "pack_runtime.py", "pack_signature.py"],
    )
    triton = {
        "python/tiny": runs_the_model,
        "python/tiny_ensemble": runs_the_model,  # the steps and the model in one instance
        "onnxruntime/tiny": (None, ["model.onnx"]),
        "onnxruntime/tiny_preprocess": ("pack_triton_yolo_pre.py", ["model.py", "pack_images.py", "pack_runtime.py"]),
        "onnxruntime/tiny_postprocess": ("pack_triton_yolo_post.py", ["model.py", "pack_images.py", "pack_runtime.py"]),
    }
    for entry, (source, files) in triton.items():
        vdir = tmp_path / entry / "1"
        assert sorted(p.name for p in vdir.iterdir()) == files, entry
        if source is not None:
            assert (vdir / "model.py").read_bytes() == (runtime / source).read_bytes()
        for name in (n for n in files if n.startswith("pack_")):
            shipped.setdefault(name, (vdir / name).read_bytes())
            assert (vdir / name).read_bytes() == shipped[name], f"{entry}/{name} differs from the .mar's copy"
    for name, data in shipped.items():
        assert data == (runtime / name).read_bytes(), name

    defined: dict[str, list[str]] = {}
    for path in sorted(Path(str(runtime)).glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                defined.setdefault(node.name, []).append(path.name)
    for function in ("letterbox", "nms", "yolo_decode", "open_rgb", "load_model", "decode_tensors", "flatten"):
        assert len(defined.get(function, [])) == 1, (function, defined.get(function))
    assert not list((ROOT / "templates").glob("triton/*.py")), "the Triton models live in the runtime package now"
