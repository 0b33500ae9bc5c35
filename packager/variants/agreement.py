"""Task-level agreement of a variant with the reference, over every row of the gate's cases.

Which measure applies follows the build's serving task (packager/serve/tasks.py, `Task.agreement`):
    top-k   classification: top-1 agreement (the same best class) and top-5 overlap (shared classes among the five
            best, as a fraction), on the first floating output's last axis
    boxes   YOLO-style detection (N, 4 + classes, anchors): of the reference's confident anchors (score >= 0.25, at
            most 100 a row), the fraction the variant keeps with the same class and a box of IoU >= 0.5
    cosine  anything else: the lowest cosine similarity between reference and variant rows, over every floating output
Each measure names its bound (`top1`, `top5`, `boxes`, `cosine`: settable in the spec's `variants.agreement`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Pairs = Sequence[tuple[list[np.ndarray], list[np.ndarray]]]  # (reference outputs, variant outputs) per case
CONFIDENT = 0.25
MAX_BOXES = 100
IOU = 0.5


def _floats(pairs: Pairs) -> list[tuple[np.ndarray, np.ndarray]]:
    """Reference and variant rows of every floating output in every case (a batch-first output's rows; cases may
    differ in their other sizes, so each is kept apart)."""
    out = []
    for ref_outputs, var_outputs in pairs:
        for ref, var in zip(ref_outputs, var_outputs, strict=True):
            if np.asarray(ref).dtype.kind != "f":
                continue
            r, v = np.asarray(ref, np.float64), np.asarray(var, np.float64)
            if r.shape != v.shape:
                return []  # a variant of another shape cannot agree (the gate says why)
            rows = r.shape[0] if r.ndim > 1 else 1
            out.append((r.reshape(rows, -1), v.reshape(rows, -1)))
    return out


def cosine(pairs: Pairs) -> dict[str, float]:
    worst = 1.0
    floats = _floats(pairs)
    if not floats:
        return {"cosine": 0.0}
    for ref, var in floats:
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(var, axis=1)
        both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(var, axis=1) == 0)
        sims = np.where(both_zero, 1.0, (ref * var).sum(axis=1) / np.maximum(norms, 1e-300))
        worst = min(worst, float(np.nan_to_num(sims, nan=0.0).min()))
    return {"cosine": worst}


def top_k(pairs: Pairs) -> dict[str, float]:
    """Top-1 agreement and top-5 overlap on the first floating output, classes on its last axis."""
    count = len(pairs[0][0]) if pairs else 0
    index = next((i for i in range(count) if np.asarray(pairs[0][0][i]).dtype.kind == "f"), None)
    if index is None:
        return {"top1": 0.0, "top5": 0.0}
    ref = [np.asarray(r[index]) for r, _ in pairs]
    var = [np.asarray(v[index]) for _, v in pairs]
    if any(r.shape != v.shape for r, v in zip(ref, var, strict=True)):
        return {"top1": 0.0, "top5": 0.0}
    classes = ref[0].shape[-1]
    r = np.concatenate([a.reshape(-1, classes) for a in ref]).astype(np.float64)
    v = np.concatenate([a.reshape(-1, classes) for a in var]).astype(np.float64)
    k = min(5, classes)
    top_r = np.argsort(-r, axis=1, kind="stable")[:, :k]
    top_v = np.argsort(-v, axis=1, kind="stable")[:, :k]
    top1 = float((top_r[:, 0] == top_v[:, 0]).mean())
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_r.tolist(), top_v.tolist(), strict=True)])
    return {"top1": top1, "top5": float(overlap)}


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes given as (cx, cy, w, h) rows."""

    def corners(x: np.ndarray) -> tuple[np.ndarray, ...]:
        return x[:, 0] - x[:, 2] / 2, x[:, 1] - x[:, 3] / 2, x[:, 0] + x[:, 2] / 2, x[:, 1] + x[:, 3] / 2

    ax1, ay1, ax2, ay2 = corners(a)
    bx1, by1, bx2, by2 = corners(b)
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * np.clip(
        np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None
    )
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    iou: np.ndarray = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    return iou


def boxes(pairs: Pairs) -> dict[str, float]:
    """Matched boxes of a YOLO head (N, 4 + classes, anchors) at the same anchors."""
    matched = total = 0
    for ref_outputs, var_outputs in pairs:
        ref, var = np.asarray(ref_outputs[0], np.float64), np.asarray(var_outputs[0], np.float64)
        if ref.shape != var.shape or ref.ndim != 3 or ref.shape[1] < 5:
            return {"boxes": 0.0}
        for r, v in zip(ref, var, strict=True):
            scores = r[4:].max(axis=0)
            chosen = np.argsort(-scores, kind="stable")[:MAX_BOXES]
            chosen = chosen[scores[chosen] >= CONFIDENT]
            if not chosen.size:
                continue
            same_class = r[4:, chosen].argmax(axis=0) == v[4:, chosen].argmax(axis=0)
            overlaps = _iou(r[:4, chosen].T, v[:4, chosen].T) >= IOU
            matched += int((same_class & overlaps).sum())
            total += int(chosen.size)
    return {"boxes": matched / total if total else 1.0}


MEASURES: dict[str, Callable[[Pairs], dict[str, float]]] = {"top-k": top_k, "boxes": boxes, "cosine": cosine}


def agreement(measure: str, pairs: Pairs, bounds: dict[str, float]) -> dict[str, Any]:
    """{measure, values, bounds, passed, reason}: every value at or above its bound passes."""
    values = MEASURES[measure](pairs)
    low = {k: v for k, v in values.items() if v < bounds[k]}
    reason = "; ".join(f"{k} {v:.4f} < bound {bounds[k]:g}" for k, v in low.items())
    return {
        "measure": measure,
        "values": {k: round(v, 6) for k, v in values.items()},
        "bounds": {k: bounds[k] for k in values},
        "passed": not low,
        **({"reason": reason} if reason else {}),
    }


__all__ = ["MEASURES", "agreement", "boxes", "cosine", "top_k"]
