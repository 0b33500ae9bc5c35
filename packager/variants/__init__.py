"""Faster artifacts behind the same gate: a registry of ONNX variant kinds (`VARIANTS`, packager/registry.py's
Registry), one small registered entry per kind; --variants, its help and the spec schema's enums are derived from it.

    ort-optimized  onnxruntime's graph optimisations saved offline (for the provider and CPU it was made on)
    slim           onnxslim's graph simplification
    int8-dynamic   onnxruntime dynamic quantization of MatMul-like operators (weights int8, activations at run time)
    int8-static    onnxruntime static quantization (QDQ), calibrated on the build's samples or a user's .npz
    fp16           float16 weights and arithmetic (GPU only: skipped on a CPU)

Each kind writes `variants/<kind>/model.onnx` from the build's ONNX export (packager/variants/kinds.py). Every
variant then passes its own gate (packager/variants/judge.py): the parity gate of packager/report/validate.py with the
kind's tolerances, a task-level agreement with the reference (packager/variants/agreement.py), and a side-by-side
measurement against the base ONNX: it is kept only when it is at least `min_speedup` times faster.

No torch here; onnx and onnxruntime are imported only when a variant is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..registry import Registry, Tolerance

FOLDER = "variants"
FILE = "model.onnx"
BASE = "base"  # --serve-variant base: serve the build's own ONNX export
DEFAULT_MIN_SPEEDUP = 1.1
DEFAULT_AGREEMENT = {"top1": 0.9, "top5": 0.8, "boxes": 0.9, "cosine": 0.99}


class Skipped(Exception):
    """A variant that cannot be made here (a missing library, no GPU): recorded as `skipped` with this reason."""


@dataclass
class MakeContext:
    """What a kind's builder gets: the base ONNX file, where to write, and the build's facts."""

    base: Path
    out: Path
    device: str  # cpu | cuda: the device the build measured on
    calibration: list[dict[str, Any]]  # input name -> array, one entry per calibration batch (int8-static)
    calibration_source: str


@dataclass(frozen=True)
class VariantKind:
    name: str
    description: str
    make: Callable[[MakeContext], dict[str, Any]]  # writes ctx.out; returns details for the report
    tolerance: Tolerance | None = None  # None: each output's own build tolerance
    scale_atol: float | None = None  # atol as this fraction of each output's scale (its largest |eager| value)

    def tolerance_for(self, atol: float, rtol: float, scale: float | None) -> Tolerance:
        """The default tolerance of one output (the build's `atol`, `rtol` and gate `scale`) for this kind."""
        if self.tolerance is None:
            return Tolerance(atol=atol, rtol=rtol)
        if self.scale_atol is not None and scale:
            return Tolerance(atol=self.scale_atol * scale, rtol=self.tolerance.rtol)
        return self.tolerance


VARIANTS: Registry[VariantKind] = Registry("variant kind", load=(f"{__name__}.kinds",))  # registration order: kinds.py's
register_variant = VARIANTS.register
get_variant = VARIANTS.get
ALL = "all"  # --variants all: every kind


@dataclass
class VariantSettings:
    """What to make and how to judge it: from --variants and friends, or the spec's `variants:`."""

    kinds: list[str] = field(default_factory=list)
    min_speedup: float = DEFAULT_MIN_SPEEDUP
    tolerances: dict[str, Tolerance] = field(default_factory=dict)  # per kind, overriding the kind's default
    agreement: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_AGREEMENT))
    calibration: str | None = None  # a .npz of calibration inputs (int8-static)
    serve: str | None = None  # a pinned kind (or `base`): served whatever the speed verdict

    def __bool__(self) -> bool:
        return bool(self.kinds)


def parse_kinds(text: str | list[str]) -> list[str]:
    """`ort-optimized,int8-dynamic` (or `all`) -> the kinds in registry order; UsageError naming an unknown one."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if names == [ALL]:
        return VARIANTS.names()
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise VARIANTS.unknown(unknown[0] if unknown else str(text), also=(ALL,))
    return [n for n in VARIANTS.names() if n in names]


def settings_from(spec: dict[str, Any], overrides: dict[str, Any]) -> VariantSettings:
    """The spec's `variants:` section, overridden by the command line (variants, min_speedup, calibration,
    serve_variant)."""
    section = dict(spec.get("variants") or {})
    kinds_given = overrides.get("variants") or section.get("kinds") or []
    settings = VariantSettings(kinds=parse_kinds(kinds_given) if kinds_given else [])
    given = overrides.get("min_speedup")
    settings.min_speedup = float(given if given is not None else section.get("min_speedup", DEFAULT_MIN_SPEEDUP))
    for kind, tol in (section.get("tolerances") or {}).items():
        default = get_variant(kind).tolerance or Tolerance()
        settings.tolerances[kind] = Tolerance(atol=tol.get("atol", default.atol), rtol=tol.get("rtol", default.rtol))
    settings.agreement.update(section.get("agreement") or {})
    settings.calibration = overrides.get("calibration") or section.get("calibration")
    if settings.calibration is not None and not Path(settings.calibration).is_file():
        raise UsageError(
            f"calibration file not found: {settings.calibration}",
            "pass an existing .npz of inputs (a .npy for a one-input model)",
        )
    serve = overrides.get("serve_variant") or section.get("serve")
    if serve is not None and serve != BASE:
        if serve not in VARIANTS:
            raise VARIANTS.unknown(serve, " for --serve-variant", also=(BASE,))
        if settings.kinds and serve not in settings.kinds:
            settings.kinds = parse_kinds([*settings.kinds, serve])
    settings.serve = serve
    if serve not in (None, BASE) and not settings.kinds:
        settings.kinds = [serve]
    return settings


__all__ = [
    "ALL",
    "BASE",
    "DEFAULT_AGREEMENT",
    "DEFAULT_MIN_SPEEDUP",
    "FILE",
    "FOLDER",
    "VARIANTS",
    "MakeContext",
    "Skipped",
    "VariantKind",
    "VariantSettings",
    "get_variant",
    "parse_kinds",
    "register_variant",
    "settings_from",
]
