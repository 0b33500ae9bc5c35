"""The human-readable summary printed at the end of `pack build`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .console import table


def _fmt(x: float | None) -> str:
    return "inf" if x is None or x == float("inf") else f"{x:.2e}"


def build_summary(report: dict[str, Any], folder: Path) -> str:
    lines = [f"built {report['name']} version {report['version']} -> {folder}"]
    for warning in report.get("warnings", []):
        lines.append(f"WARNING: {warning}")
    rows = []
    formats = report.get("formats") or {}
    for fmt in ("eager", *formats):
        status = "reference" if fmt == "eager" else formats[fmt]["status"]
        checks = (report["validation"].get(fmt) or {}).get("checks", [])
        perf = report.get("performance", {}).get(fmt, {})
        for case in report.get("cases") or [{"label": f"batch {b}", "batch": b} for b in report["batch_sizes"]]:
            mine = [c for c in checks if c.get("case", f"batch {c.get('batch')}") == case["label"]]
            p = perf.get(str(case["batch"]), {}) if "axis" not in case["label"] else {}
            parity = "reference" if fmt == "eager" else ("-" if not mine else ("pass" if all(c["passed"] for c in mine) else "FAIL"))
            errors = [c["max_abs_error"] for c in mine]
            rows.append([
                fmt, status if fmt != "eager" else "", case["label"], parity,
                "" if not mine else _fmt(None if None in errors else max(errors)),
                f"{p['p50_ms']:.2f}" if p else "-", f"{p['p95_ms']:.2f}" if p else "-",
                f"{p['throughput_per_s']:.1f}" if p and p.get("throughput_per_s") else "-",
            ])
    lines.append(table(rows, ["format", "status", "case", "parity", "max abs err", "p50 ms", "p95 ms", "items/s"]))
    export = report.get("export", {})
    parts = []
    if "torchscript" in report["artifacts"]:
        parts.append(f"torchscript {report['artifacts']['torchscript']} ({export.get('torchscript', {}).get('method', '?')})")
    if "onnx" in report["artifacts"]:
        onnx = export.get("onnx", {})
        parts.append(f"onnx {report['artifacts']['onnx']} ({onnx.get('exporter', '?')} exporter, opset {onnx.get('opset', '?')})")
    parts += [f"{n} {p}" for n, p in report["artifacts"].items() if n not in ("torchscript", "onnx")]
    lines.append("; ".join(parts) + f"; device {report['device']}; {report['build_seconds']} s")
    return "\n".join(lines)
