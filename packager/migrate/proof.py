"""Proof, answer for answer: the same requests sent to the old model and to the migrated build, their answers compared.

The requests: for an image model, synthetic JPEGs of three sizes and the user's own (`--sample`); for a tensor model,
the build's recorded sample and a second seeded input. The old answer comes from the running old endpoint
(`--against`), else from the source run in this process (TorchServe's own built-in handler on the archive's model, or
the source's model alone). The new answer comes from the build served on a target (with `--against`), else from
pack's serving runtime in this process on the file every target serves.

What is compared is what the old endpoint's clients read (`MigrationSource.answers`): a classifier's top-k labels
and probabilities, a segmenter's per-pixel class and probability, or the model's tensors under the build's gate
tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..registry import Tolerance
from ..report.build_report import BuildReport
from ..targets.capabilities import Request
from ..targets.migration import IMAGE_ANSWERS, MigrationSource

# Probabilities agree within PROBABILITY_ATOL + PROBABILITY_RTOL x the larger: scale-aware, so that 1,000 classes of
# about 0.001 each are compared as closely as 2 classes of 0.5 (pack's runtime and TorchServe's handlers measured
# within 2e-5 of each other on the same image)
PROBABILITY_ATOL = 1e-4
PROBABILITY_RTOL = 1e-2
SEGMENT_MISMATCH = 0.001  # the share of pixels whose class may differ (ties at a boundary)
DETECTION_THRESHOLD = 0.5  # TorchServe's object_detector answers the boxes scored this or more
BOX_ATOL = 0.5  # pixels: two pipelines' box corners agree to this


@dataclass
class Compared:
    """One request's verdict."""

    request: str
    agree: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request, "agree": self.agree, "detail": self.detail}


IMAGE, STEPS, TENSORS = "image", "steps", "tensors"  # what a request is: an image, a body the handler reads, tensors
TEXTS = ("The team won the championship game last night", "Stocks fell sharply as the markets opened this morning")


def mode(source: MigrationSource, samples: list[Path]) -> str:
    """How the two sides are asked: an image both pre-process (TorchServe's vision handlers), a body the old
    handler's own steps read around either model (text_classifier; a custom handler given --sample bodies), or the
    model's tensors (any other source)."""
    if source.answers in IMAGE_ANSWERS:
        return IMAGE
    if source.answers == "text-classes" or (source.answers == "custom" and samples):
        return STEPS
    return TENSORS


def requests(how: str, build_dir: Path, report: BuildReport, samples: list[Path]) -> list[Request]:
    """The requests both sides answer: image bytes with pack's pre-processing of them, bodies, or tensors."""
    from ..report.samples import load_sample
    from ..serve.tasks import sample_image

    if how == IMAGE:
        import importlib

        from ..serve.tasks import runtime_on_path

        runtime_on_path()
        steps = importlib.import_module("pack_images")  # pack's serving runtime: what every server does to an image
        images = [(f"synthetic {w}x{h} JPEG", sample_image(w, h)) for w, h in ((640, 480), (224, 224), (300, 500))]
        images += [(str(p), p.read_bytes()) for p in samples]
        made = []
        for what, body in images:
            image = steps.open_rgb(body, steps.max_pixels(report.preprocessing))
            pre = report.preprocessing or {"image_size": [image.size[1], image.size[0]]}  # none: the image as it came
            made.append(Request(body, "application/octet-stream", what, [steps.classification_tensor(image, pre)]))
        return made
    if how == STEPS:
        bodies = [(str(p), p.read_bytes()) for p in samples] or [(f"text {t!r}", t.encode()) for t in TEXTS]
        return [Request(body, "application/octet-stream", what, []) for what, body in bodies]
    sample = load_sample(build_dir, report).inputs
    rng = np.random.default_rng(1)
    # a second input: other values of the same kind (ids and indexes shuffled, so they stay in range)
    second = [
        rng.standard_normal(a.shape).astype(a.dtype) if a.dtype.kind == "f" else rng.permutation(a.reshape(-1)).reshape(a.shape)
        for a in sample
    ]
    return [
        Request(b"", "application/json", f"{what} input", list(arrays))
        for what, arrays in (("recorded", sample), ("seeded", second))
    ]


# ---------------------------------------------------------------- answers as the old clients read them


def softmax(logits: np.ndarray, axis: int) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=axis, keepdims=True))


def classes(logits: np.ndarray, labels: list[str] | None, top_k: int) -> dict[str, float]:
    """{label: probability} of the top k classes of one image's logits (TorchServe's image_classifier answer)."""
    probs = softmax(np.asarray(logits, dtype=np.float64).reshape(-1), 0)
    order = np.argsort(-probs, kind="stable")[:top_k]
    return {(labels[i] if labels and i < len(labels) else str(int(i))): float(probs[i]) for i in order}


def segments(out: np.ndarray) -> np.ndarray:
    """(H, W, 2): each pixel's class and its probability (TorchServe's image_segmenter answer for one image)."""
    probs = softmax(np.asarray(out, dtype=np.float64)[0], 0)
    return np.stack([probs.argmax(0).astype(np.float64), probs.max(0)], axis=-1)


def close(p: float, q: float, atol: float) -> bool:
    """Two probabilities (or scores) alike: within atol plus PROBABILITY_RTOL of the larger."""
    return abs(p - q) <= atol + PROBABILITY_RTOL * max(abs(p), abs(q))


def _classes_agree(old: dict[str, float], new: dict[str, float], atol: float) -> tuple[bool, str]:
    if not isinstance(old, dict) or not old or not all(_number(v) for v in old.values()):
        return False, f"the old answer is not TorchServe's {{label: probability}} ({str(old)[:80]})"
    olds = sorted(old.items(), key=lambda kv: -kv[1])
    news = sorted(new.items(), key=lambda kv: -kv[1])
    for mine, other, side in ((olds, new, "new"), (news, old, "old")):
        floor = min(other.values())
        for label, p in mine:
            q = other.get(label)
            if q is None and not (p <= floor or close(p, floor, atol)):
                return False, f"{label} ({p:.4g}) is missing from the {side} top {len(other)}"
            if q is not None and not close(p, q, atol):
                return False, f"{label}: {p:.4g} vs {q:.4g}"
    if olds[0][0] != news[0][0] and not close(olds[0][1], news[0][1], atol):
        return False, f"top-1 {olds[0][0]} vs {news[0][0]}"
    worst = max((abs(p - new[label]) for label, p in olds if label in new), default=0.0)
    return True, f"top-1 {olds[0][0]}, top-{len(olds)} agree (largest difference {worst:.2e})"


def _segments_agree(old: Any, new: np.ndarray, atol: float) -> tuple[bool, str]:
    mine = np.asarray(old, dtype=np.float64)
    if mine.shape != new.shape:
        return False, f"answer shape {list(mine.shape)} vs {list(new.shape)}"
    same = mine[..., 0] == new[..., 0]
    mismatch = 1.0 - float(same.mean())
    diff = np.abs(mine[..., 1] - new[..., 1])
    worst = float(diff[same].max(initial=0.0))
    bound = atol + PROBABILITY_RTOL * np.maximum(mine[..., 1], new[..., 1])
    ok = mismatch <= SEGMENT_MISMATCH and bool(np.all(diff[same] <= bound[same]))
    return ok, f"{mismatch:.2%} of pixels differ in class, probabilities within {worst:.2e}"


def detections(new: list[np.ndarray], names: list[str], labels: list[str] | None) -> list[dict[str, Any]]:
    """The build's boxes, labels and scores as TorchServe's object_detector answers them: [{label: box, "score": s}]
    for the boxes scored at least DETECTION_THRESHOLD."""
    found = {n.rpartition(".")[2]: np.asarray(a) for n, a in zip(names, new, strict=True)}
    if not {"boxes", "labels", "scores"} <= set(found):
        return []
    out = []
    for box, label, score in zip(
        found["boxes"].reshape(-1, 4), found["labels"].reshape(-1), found["scores"].reshape(-1), strict=True
    ):
        if score >= DETECTION_THRESHOLD:
            name = labels[int(label)] if labels and 0 <= int(label) < len(labels) else str(int(label))
            out.append({name: [float(v) for v in box], "score": float(score)})
    return out


def _boxes_agree(old: Any, new: list[dict[str, Any]], atol: float) -> tuple[bool, str]:
    """Every detection on one side has one on the other with its label, corners within BOX_ATOL pixels and its score
    within atol, unless its score is within atol of the threshold (kept by one pipeline, dropped by the other)."""
    if not isinstance(old, list) or not all(isinstance(d, dict) and "score" in d for d in old):
        return False, f"the old answer is not TorchServe's detections ({str(old)[:80]})"

    def split(d: dict[str, Any]) -> tuple[str, np.ndarray, float]:
        label = next(k for k in d if k != "score")
        return label, np.asarray(d[label], dtype=np.float64), float(d["score"])

    for mine, other, side in ((old, new, "new"), (new, old, "old")):
        theirs = [split(d) for d in other]
        for d in mine:
            label, box, score = split(d)
            if not any(lb == label and np.abs(b - box).max() <= BOX_ATOL and close(sc, score, atol) for lb, b, sc in theirs):
                if not close(score, DETECTION_THRESHOLD, atol):
                    return False, f"{label} {box.round(1).tolist()} ({score:.3f}) has no match in the {side} answer"
    return True, f"{len(old)} detections matched (label, box within {BOX_ATOL} px, score)"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_agree(old: Any, new: Any, atol: float, rtol: float, where: str = "answer") -> tuple[bool, str]:
    """Two JSON answers alike: the same keys, lengths and strings, numbers within the tolerances."""
    if _number(old) and _number(new):
        if abs(old - new) > atol + rtol * abs(old):
            return False, f"{where}: {old:.6g} vs {new:.6g} (atol {atol}, rtol {rtol})"
        return True, "the answers agree"
    pairs: list[tuple[Any, Any, str]] = []
    if isinstance(old, dict) and isinstance(new, dict):
        if set(old) != set(new):
            return False, f"{where}: keys {sorted(map(str, old))[:5]} vs {sorted(map(str, new))[:5]}"
        pairs = [(old[k], new[k], f"{where}.{k}") for k in old]
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return False, f"{where}: {len(old)} items vs {len(new)}"
        pairs = [(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(old, new, strict=True))]
    elif old != new:
        return False, f"{where}: {str(old)[:40]} vs {str(new)[:40]}"
    for a, b, at in pairs:
        ok, detail = _json_agree(a, b, atol, rtol, at)
        if not ok:
            return ok, detail
    return True, "the answers agree"


def _worst(old: Any, new: Any) -> float:
    """The largest difference between the numbers of two answers that agree."""
    if _number(old) and _number(new):
        return float(abs(old - new))
    if isinstance(old, dict) and isinstance(new, dict):
        return max((_worst(old[k], new[k]) for k in old if k in new), default=0.0)
    if isinstance(old, list) and isinstance(new, list):
        return max((_worst(a, b) for a, b in zip(old, new, strict=True)), default=0.0)
    return 0.0


def _tensors_agree(old: list[np.ndarray], new: list[np.ndarray], names: list[str], tol: Tolerance) -> tuple[bool, str]:
    """The old model's outputs against the build's, through the gate's own comparison (report/validate.py)."""
    from ..report.cases import Case
    from ..report.validate import first_failure, validate_model_outputs

    expected = [np.asarray(o) for o in old]
    labels = names if len(names) == len(expected) else [f"output {i}" for i in range(len(expected))]
    batch = int(expected[0].shape[0]) if expected and expected[0].ndim else 1
    case = Case("the old model", batch, [], expected)
    checks = validate_model_outputs(lambda _: [np.asarray(n) for n in new], [case], labels, [tol] * len(labels))
    bad = first_failure(checks)
    if bad is not None:
        return False, f"{bad.output}: {bad.reason}"
    return True, f"{len(checks)} outputs within {max((c.max_abs_error for c in checks), default=0.0):.2e}"


def judge(
    kind: str,
    request: Request,
    old: Any,
    new: Any,
    names: list[str],
    labels: list[str] | None,
    tol: tuple[float, float],
) -> Compared:
    """Compare one request's answers: `kind` is what `old` is: "classes", "segments" or "boxes" (the old endpoint's
    answer, read the way its clients read it), "json" (the old handler's answers, the new one made by the same
    handler's steps around the build) or "tensors" (the old model's outputs); `new` are the build's outputs, named
    `names` (the new JSON answer for "json")."""
    atol, rtol = tol
    if kind == "classes":
        top_k = len(old) if isinstance(old, dict) and old else 5
        ok, detail = _classes_agree(old, classes(new[0], labels, top_k), max(atol, PROBABILITY_ATOL))
    elif kind == "segments":
        ok, detail = _segments_agree(old, segments(new[0]), max(atol, PROBABILITY_ATOL))
    elif kind == "json":
        ok, detail = _json_agree(old, new, max(atol, PROBABILITY_ATOL), rtol)
        detail = f"{detail} (numbers within {_worst(old, new):.2e})" if ok else detail
    elif kind == "boxes":
        ok, detail = _boxes_agree(old, detections(new, names, labels), max(atol, PROBABILITY_ATOL))
    else:
        arrays = list(old.values()) if isinstance(old, dict) else list(old)
        ok, detail = _tensors_agree(arrays, new, names, Tolerance(atol, rtol))
    return Compared(request.description, ok, detail)
