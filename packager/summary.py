"""The human-readable summary printed at the end of `pack build`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .console import table


def _fmt(x: float) -> str:
    return "inf" if x == float("inf") else f"{x:.2e}"


def build_summary(report: dict[str, Any], folder: Path) -> str:
    lines = [f"built {report['name']} version {report['version']} -> {folder}"]
    for warning in report.get("warnings", []):
        lines.append(f"WARNING: {warning}")
    rows = []
    for fmt in ("eager", "torchscript", "onnx"):
        val = report["validation"].get(fmt)
        perf = report.get("performance", {}).get(fmt, {})
        for batch in report["batch_sizes"]:
            p = perf.get(str(batch), {})
            rows.append(
                [
                    fmt,
                    str(batch),
                    "reference" if val is None else ("pass" if val["passed"] else "FAIL"),
                    "" if val is None else _fmt(max(c["max_abs_error"] for c in val["checks"] if c["batch"] == batch)),
                    f"{p['p50_ms']:.2f}" if p else "-",
                    f"{p['p95_ms']:.2f}" if p else "-",
                    f"{p['throughput_per_s']:.1f}" if p and p.get("throughput_per_s") else "-",
                ]
            )
    lines.append(table(rows, ["format", "batch", "parity", "max abs err", "p50 ms", "p95 ms", "items/s"]))
    ts = report["export"]["torchscript"]
    lines.append(
        f"torchscript: {report['artifacts']['torchscript']} ({ts['method']}); onnx: {report['artifacts']['onnx']} "
        f"(opset {report['export']['onnx']['opset']}); device {report['device']}; {report['build_seconds']} s"
    )
    return "\n".join(lines)
