"""Helpers of the TorchServe tests: build copies, images, the handlers loaded in-process, in-process references, HTTP."""

from __future__ import annotations

import importlib
import io
import json
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers import ROOT

HANDLER_MODULES = (
    "pack_runtime",
    "pack_requests",
    "pack_images",
    "pack_torchserve",
    "pack_classifier",
    "pack_detector",
    "pack_tensors",
)


def copy_build(folder: Path, store: Path, version: str | None = None) -> Path:
    """Copy one build folder into `store` (as `version` when given, with its report updated); returns the store."""
    version = version or folder.name
    dest = store / folder.parent.name / version
    shutil.copytree(folder, dest)
    if version != folder.name:
        report = json.loads((dest / "report.json").read_text())
        report["version"] = version
        (dest / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return store


def png_bytes(height: int, width: int, seed: int = 0, fmt: str = "PNG") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    noise = rng.integers(0, 64, size=(height, width, 3))
    pixels = np.clip(base * (0.5 + 0.5 * rng.random(3)) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def jpeg_bytes(height: int, width: int, seed: int = 0) -> bytes:
    return png_bytes(height, width, seed, fmt="JPEG")


def unpack_mar(mar: Path, dest: Path) -> Path:
    with zipfile.ZipFile(mar) as zf:
        zf.extractall(dest)
    return dest


def load_handler(model_dir: Path, batch_size: int = 1) -> tuple[Any, Any]:
    """Import the archive's handler as TorchServe's worker does (model dir on sys.path) with a real ts Context."""
    from ts.context import Context, RequestProcessor

    manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())
    import yaml

    config = yaml.safe_load((model_dir / manifest["model"]["configFile"]).read_text())
    for name in HANDLER_MODULES:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(model_dir))
    try:
        module = importlib.import_module(manifest["model"]["handler"][:-3])
    finally:
        sys.path.remove(str(model_dir))
    context = Context(
        manifest["model"]["modelName"], str(model_dir), manifest, batch_size, None, "0.12.0", model_yaml_config=config
    )
    module.handle(None, context)  # initialise, as TorchServe does

    def handle(batch: list[dict[str, Any]], ctx: Any) -> list[Any]:
        ctx.request_processor = [RequestProcessor({}) for _ in batch]
        return module.handle(batch, ctx)

    return handle, context


def classification_input(image: bytes, pre: dict[str, Any]) -> np.ndarray:
    """torchvision's own transforms (an independent implementation of the handler's preprocessing)."""
    from PIL import Image
    from torchvision import transforms

    pil = Image.open(io.BytesIO(image)).convert("RGB")
    steps = [
        transforms.Resize(pre["resize"]),
        transforms.CenterCrop(pre["crop"]),
        transforms.ToTensor(),
        transforms.Normalize(pre["mean"], pre["std"]),
    ]
    return transforms.Compose(steps)(pil).unsqueeze(0).numpy()


def run_in_process(folder: Path, arrays: list[np.ndarray], fmt: str = "onnx") -> list[np.ndarray]:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        return list(session.run(None, dict(zip(names, arrays, strict=True))))
    import torch

    from packager.console import on_purpose

    with on_purpose("torch.jit.load"):
        module = torch.jit.load(str(folder / "model.pt"), map_location="cpu").eval()
    with torch.inference_mode():
        out = module(*[torch.from_numpy(a) for a in arrays])
    return [(out if isinstance(out, torch.Tensor) else out[0]).numpy()]


def classifier_reference(folder: Path, image: bytes, fmt: str = "onnx") -> dict[str, Any]:
    """Top classes and softmax scores of `image`, computed in this process."""
    report = json.loads((folder / "report.json").read_text())
    logits = run_in_process(folder, [classification_input(image, report["preprocessing"])], fmt)[0][0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    return {"class_ids": [int(i) for i in order], "scores": [float(probs[i]) for i in order]}


def detector_reference(folder: Path, image: bytes, conf: float, iou: float, max_det: int) -> list[dict[str, Any]]:
    """YOLO detections of `image` in this process: the handler's letterbox/NMS helpers around onnxruntime."""
    root = ROOT / "handlers"
    sys.path.insert(0, str(root))
    try:
        pack_images = importlib.import_module("pack_images")
    finally:
        sys.path.remove(str(root))
    from PIL import Image

    labels = (folder / "labels.txt").read_text().split("\n")
    tensor, geometry = pack_images.letterbox(Image.open(io.BytesIO(image)).convert("RGB"), (640, 640))
    raw = run_in_process(folder, [tensor])[0]
    return pack_images.yolov8_detections(raw[0], geometry, conf, iou, max_det, labels)


def post(
    url: str, body: bytes, token: str | None, content_type: str = "application/octet-stream", timeout: float = 120
) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, {"raw": text.decode("utf-8", "replace")}
