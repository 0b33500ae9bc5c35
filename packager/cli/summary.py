"""The human-readable summary printed at the end of `pack build`."""

from __future__ import annotations

from pathlib import Path

from ..console import table
from ..report.build_report import BuildReport


def _fmt(x: float | None) -> str:
    return "inf" if x is None or x == float("inf") else f"{x:.2e}"


def build_summary(report: BuildReport, folder: Path) -> str:
    lines = [f"built {report.name} version {report.version} -> {folder}"]
    lines += [f"WARNING: {warning}" for warning in report.warnings]
    rows = []
    for fmt in ("eager", *report.formats):
        status = "" if fmt == "eager" else report.formats[fmt].status
        checks = (report.validation.get(fmt) or {}).get("checks", [])
        perf = report.performance.get(fmt, {})
        for case in report.cases:
            mine = [c for c in checks if c.get("case") == case["label"]]
            p = perf.get(str(case["batch"]), {}) if "axis" not in case["label"] else {}
            parity = (
                "reference" if fmt == "eager" else ("-" if not mine else ("pass" if all(c["passed"] for c in mine) else "FAIL"))
            )
            errors = [c["max_abs_error"] for c in mine]
            rows.append(
                [
                    fmt,
                    status,
                    case["label"],
                    parity,
                    "" if not mine else _fmt(None if None in errors else max(errors)),
                    f"{p['p50_ms']:.2f}" if p else "-",
                    f"{p['p95_ms']:.2f}" if p else "-",
                    f"{p['throughput_per_s']:.1f}" if p and p.get("throughput_per_s") else "-",
                ]
            )
    lines.append(table(rows, ["format", "status", "case", "parity", "max abs err", "p50 ms", "p95 ms", "items/s"]))
    parts = []
    for name, path in report.artifacts.items():
        info = report.export.get(name, {})
        how = {"torchscript": info.get("method"), "onnx": f"{info.get('exporter')} exporter, opset {info.get('opset')}"}.get(name)
        parts.append(f"{name} {path}" + (f" ({how})" if how else ""))
    lines.append("; ".join(parts) + f"; device {report.device}; {report.build_seconds} s")
    if report.variants:
        from ..variants.optimize import variants_table

        lines.append(variants_table(report.variants))
    return "\n".join(lines)
