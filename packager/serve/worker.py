"""What a worker of pack's serving runtime reads at start-up, whichever server runs it: `pack.json` (the model's
inputs, outputs, pre- and post-processing: `metadata`) and the entry handler's own settings (thresholds, top-k,
labels, and the request bounds the build sets: `handler_settings`, model-config.yaml's `handler:` section in a TorchServe
archive). TorchServe's archive, the FastAPI server's model folders and bench's in-process handler all take them from
here (`worker_settings`), so each runs the handler with the same settings.
"""

from __future__ import annotations

from typing import Any

from ..report.build_report import BuildReport
from ..report.formats import FILES
from .tasks import task_for


def metadata(report: BuildReport, fmt: str, serialized: str, labels: str | None) -> dict[str, Any]:
    """pack.json: what the handlers need to know about the model (inputs, outputs, pre/post-processing)."""
    return {
        "pack_metadata": 1,
        "name": report.name,
        "version": report.version,
        "task": report.task,
        "format": fmt,
        "serialized_file": serialized,
        "inputs": report.to_dict()["inputs"],
        "outputs": [o.name for o in report.outputs],
        "preprocessing": report.preprocessing,
        "postprocessing": report.postprocessing,
        "labels_file": labels,
    }


def handler_settings(report: BuildReport, handler_file: str, labels_file: str | None) -> dict[str, Any]:
    """The handler's settings: what it reads at start (thresholds, top-k, labels) and the bounds of a request:
    `max_batch`, the largest batch size the build validated (a tensor or v2 request with more rows is a 400)."""
    post = report.postprocessing
    section: dict[str, Any] = {}
    if report.batch_sizes:
        section["max_batch"] = max(report.batch_sizes)
    if handler_file == "pack_classifier.py":
        section["top_k"] = int(post.get("top_k", 5))
    elif handler_file == "pack_detector.py":
        section["conf_threshold"] = float(post.get("conf_threshold", 0.25))
        section["iou_threshold"] = float(post.get("iou_threshold", 0.45))
        section["max_detections"] = int(post.get("max_detections", 300))
    if labels_file:
        section["labels_file"] = labels_file
    return section


SIGNED = ("model.sig", "pack-signing-key.pub")  # the build's signature and the deploy's public key, beside the model


def signature_settings(signed_name: str) -> dict[str, str]:
    """pack.json's `signature` (pack deploy --require-signature --public-key): the files beside the model and the
    served file's name in the signed build; the runtime checks it before loading (handlers/pack_signature.py)."""
    return {"file": SIGNED[0], "public_key": SIGNED[1], "signed_name": signed_name}


def worker_settings(report: BuildReport, fmt: str, labels: str | None) -> dict[str, Any]:
    """pack.json for the build's `fmt` export, with the handler's settings under `handler` (what a worker reads)."""
    meta = metadata(report, fmt, FILES[fmt], labels)
    meta["handler"] = handler_settings(report, task_for(report).handler, labels)
    return meta


__all__ = ["SIGNED", "handler_settings", "metadata", "signature_settings", "worker_settings"]
