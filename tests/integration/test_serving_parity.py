"""TorchServe and Triton answer the same image with the same detections: one yolov8n build deployed to both real
servers by pack (`pack deploy --target torchserve`, `--target triton`), the same JPEG sent to TorchServe's
/predictions and to Triton's yolov8n_ensemble, boxes, scores and classes compared. And a torchvision detector (Faster
R-CNN, its variable number of detections served as -1 dims) answers the build's sample alike on both, through the
Open Inference Protocol.

Both servers run the one serving runtime (handlers/pack_images.py: letterbox, YOLO decoding, NMS), so they must
agree to the float32 bit on scores and classes, and on boxes up to TorchServe's two-decimal JSON.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT
from tests.helpers.cli import pack_json, run_pack
from tests.helpers.oip import v2_infer
from tests.helpers.processes import processes_under, tritonserver_pids_for
from tests.helpers.torchserve import post
from tests.helpers.triton import ensure_tritonserver

pytestmark = [pytest.mark.slow, pytest.mark.server]

IMAGES = ((640, 480), (500, 700))  # landscape and portrait: the letterbox pads each axis in turn


def distinct_weights(path: Path) -> None:
    """yolov8n weights that give distinct, varied detections on pack's sample image, saved as a state_dict.

    The untrained network's features vanish before the head, so every anchor of a stride gets the same class score
    and ties would decide NMS. Here the batch-norm statistics are taken from one seeded batch (activations keep unit
    scale), and the class convolutions are scaled so their logits spread (std 1.5, bias -7). With the default
    threshold of 0.25, the 640x480 sample image gives about 70 boxes of a dozen classes (NMS drops some 470 more),
    the 500x700 one about 10 boxes of 5 classes."""
    import importlib

    import torch

    from packager.registry import get_entry
    from packager.serve.tasks import runtime_on_path, sample_image

    torch.manual_seed(0)
    entry = get_entry("yolov8n")
    assert entry is not None
    model = entry.factory()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 640, 640))
    model.eval()
    logits: dict[int, torch.Tensor] = {}
    heads = model.model[-1].cv3
    hooks = [seq[-1].register_forward_hook(lambda m, i, o, k=k: logits.__setitem__(k, o)) for k, seq in enumerate(heads)]
    runtime_on_path()
    images = importlib.import_module("pack_images")
    pixels, _ = images.letterbox(images.open_rgb(sample_image(*IMAGES[0])), (640, 640))
    with torch.no_grad():
        model(torch.from_numpy(pixels))
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        for k, seq in enumerate(heads):
            seq[-1].weight.mul_(1.5 / float(logits[k].std()))
            seq[-1].bias.fill_(-7.0)
    torch.save(model.state_dict(), path)


@pytest.fixture(scope="module")
def parity_store(tmp_path_factory):
    """A store with a yolov8n build (distinct weights, ONNX); both servers pack launches for it are stopped at the
    end and no process of either is left."""
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    ensure_tritonserver()
    store = tmp_path_factory.mktemp("parity-store")
    weights = store.parent / "yolov8n-distinct.pt"
    distinct_weights(weights)
    proc = run_pack(
        "build",
        "yolov8n",
        "--weights",
        str(weights),
        "--formats",
        "onnx",
        "--iterations",
        "0",
        "--device",
        "cpu",
        "--store",
        str(store),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield store
    run_pack("stop", "--target", "torchserve", "--store", str(store))
    run_pack("stop", "--target", "triton", "--store", str(store))
    root = store / ".servers" / "torchserve"
    deadline = time.monotonic() + 15
    while processes_under(root) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_under(root) == [], "TorchServe processes left after pack stop"
    assert tritonserver_pids_for(store) == [], "a tritonserver is still running after pack stop"


def test_torchserve_and_triton_answer_the_same_detections(parity_store):
    from packager.serve.tasks import sample_image
    from packager.targets.triton.deploy import detect

    ts = pack_json("deploy", "yolov8n", "--target", "torchserve", "--store", str(parity_store))
    tr = pack_json("deploy", "yolov8n", "--target", "triton", "--store", str(parity_store))
    assert ts["smoke_test"]["passed"] and ts["handler"] == "pack_detector.py" and ts["format"] == "onnx"
    assert tr["smoke_test"]["passed"] and tr["serving_model"] == "yolov8n_ensemble" and tr["format"] == "onnx"
    token = json.loads(Path(ts["token_file"]).read_text())["inference"]["key"]
    for width, height in IMAGES:
        jpeg = sample_image(width, height)
        status, answer = post(ts["predictions_url"], jpeg, token, "image/jpeg")
        assert status == 200, answer
        triton = detect(tr["url"], tr["serving_model"], jpeg, timeout=120)
        got = answer["detections"]
        assert answer["image_size"] == [width, height]
        assert len(got) == len(triton["boxes"]) >= 10, (width, height, len(got), len(triton["boxes"]))
        assert len({d["class_id"] for d in got}) >= 3  # several classes: the NMS is class-aware on both
        assert [d["class_id"] for d in got] == triton["classes"].tolist()
        np.testing.assert_array_equal(np.asarray([d["score"] for d in got], dtype=np.float32), triton["scores"])
        assert min(d["score"] for d in got) > 0.25  # the build's threshold, on both servers
        np.testing.assert_allclose(np.asarray([d["box"] for d in got]), triton["boxes"], rtol=0, atol=0.005 + 1e-4)
        boxes = triton["boxes"]
        assert boxes[:, [0, 2]].max() <= width and boxes[:, [1, 3]].max() <= height and boxes.min() >= 0


@pytest.fixture(scope="module")
def detector_store(tmp_path_factory):
    """A store with torchvision's Faster R-CNN at 64 pixels (ONNX, about 20 detections); both servers are stopped at
    the end."""
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    ensure_tritonserver()
    store = tmp_path_factory.mktemp("detector-store")
    models = ROOT / "tests" / "integration" / "shape_models.py"
    source = f"{models}:fasterrcnn"
    pack_json(
        "build",
        source,
        "--name",
        "frcnn",
        "--input",
        "images:1x3x64x64",
        "--formats",
        "onnx",
        "--iterations",
        "0",
        "--store",
        str(store),
    )
    yield store
    run_pack("stop", "--target", "torchserve", "--store", str(store))
    run_pack("stop", "--target", "triton", "--store", str(store))


def test_a_torchvision_detector_answers_alike_on_both_servers(detector_store):
    from packager.report.build_report import BuildReport
    from packager.report.samples import load_sample
    from packager.report.validate import first_failure

    build = detector_store / "frcnn" / "1"
    report = BuildReport.load(build)
    assert all(o.variable == [0] for o in report.outputs)
    sample = load_sample(build, report)
    assert len(sample.case.outputs[0]) >= 5  # detections to compare, not an empty answer
    answers = []
    for target in ("triton", "torchserve"):
        doc = pack_json("deploy", "frcnn", "--target", target, "--store", str(detector_store))
        assert doc["smoke_test"]["passed"], doc
        headers = {}
        if doc.get("token_file"):
            headers["Authorization"] = "Bearer " + json.loads(Path(doc["token_file"]).read_text())["inference"]["key"]
        served = v2_infer(doc["infer_url"], dict(zip(report.input_names, sample.inputs, strict=True)), headers)
        got = [served[n] for n in report.output_names]
        bad = first_failure(sample.check_outputs(got))
        assert bad is None, (target, bad)
        answers.append(got)
    for triton, torchserve in zip(*answers, strict=True):
        np.testing.assert_array_equal(triton, torchserve)  # the same file and runtime on both servers
