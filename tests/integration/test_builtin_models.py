"""End-to-end builds of the real built-in models (slow: seconds to minutes on 2 CPU cores)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.cli import run_pack

pytestmark = pytest.mark.slow


def _report(folder):
    return json.loads((folder / "report.json").read_text())


def test_resnet18_builds_and_passes_the_gate(built):
    folder = built("resnet18")
    report = _report(folder)
    assert report["validation"]["torchscript"]["passed"] and report["validation"]["onnx"]["passed"]
    assert report["outputs"][0]["shape"] == [1, 1000]
    labels = (folder / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000 and labels[0] == "tench"
    assert report["preprocessing"]["mean"] == [0.485, 0.456, 0.406]


def test_yolov8n_builds_raw_detection_head(built):
    folder = built("yolov8n")
    report = _report(folder)
    assert report["task"] == "object-detection"
    assert report["outputs"][0]["name"] == "output0" and report["outputs"][0]["shape"] == [1, 84, 8400]
    assert report["validation"]["onnx"]["passed"] and report["validation"]["torchscript"]["passed"]
    assert {c["batch"] for c in report["validation"]["onnx"]["checks"]} == {1, 4}
    labels = (folder / "labels.txt").read_text().splitlines()
    assert len(labels) == 80 and labels[0] == "person"
    assert report["postprocessing"]["iou_threshold"] == 0.45
    x = np.load(folder / report["samples"]["inputs"][0])
    assert x.min() >= 0.0 and x.max() <= 1.0  # images in [0, 1], as the detector expects


def test_yolov8n_weights_state_dict_and_ultralytics_checkpoint(tmp_path):
    import torch

    from packager.registry import create_model

    torch.manual_seed(7)
    model = create_model("yolov8n")
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    torch.save({"model": model, "epoch": 3}, tmp_path / "ckpt.pt")  # the shape of an ultralytics checkpoint
    proc = run_pack("build", "yolov8n", "--weights", str(tmp_path / "ckpt.pt"), "--store", str(tmp_path / "s"))
    assert proc.returncode == 2 and "--unsafe-load" in proc.stderr
    # the weights' routes are the subject: no pt2 (its torch.export capture is the slow part), nothing measured
    quick = ("--store", str(tmp_path / "s"), "--json", "--iterations", "0", "--batch-sizes", "1,2")
    quick += ("--formats", "torchscript,onnx")
    proc = run_pack("build", "yolov8n", "--weights", str(tmp_path / "sd.pt"), *quick)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["weights"]["random"] is False
    assert report["validation"]["onnx"]["passed"]
    # a trusted ultralytics checkpoint (a pickled model) loads with --unsafe-load, and its class names become the labels
    model.names = {i: f"part_{i}" for i in range(80)}
    torch.save({"model": model, "epoch": 3}, tmp_path / "named.pt")
    proc = run_pack("build", "yolov8n", "--weights", str(tmp_path / "named.pt"), "--unsafe-load", "--version", "2", *quick)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    folder = tmp_path / "s" / "yolov8n" / "2"
    assert (folder / "labels.txt").read_text().splitlines()[:2] == ["part_0", "part_1"]
    np.testing.assert_allclose(
        np.load(folder / "samples/output.output0.npy"),
        np.load(tmp_path / "s" / "yolov8n" / "1" / "samples/output.output0.npy"),
        atol=1e-4,
    )  # the same weights through either route give the same model
