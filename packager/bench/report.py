"""The bench's outputs besides JSON: a table for the terminal and a PNG plot (latency vs throughput per row)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..console import table


def _num(value: Any, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def text_table(result: dict[str, Any]) -> str:
    host = result["host"]
    lines = [
        f"pack bench {result['model']} v{result['version']}: {host.get('cpu_count')} CPU cores ({host.get('cpu') or '?'}), "
        f"GPU {host.get('gpu') or 'none'}, load average {host['load_average'][0]} at start",
        f"{result['settings']['requests']} requests per run, closed loop, "
        f"concurrency {','.join(map(str, result['settings']['concurrency']))}; "
        "ratio = throughput / the row it is compared with, at the same concurrency; vs HTTP = throughput / the "
        "fastapi row's (pack's handler code behind plain HTTP)",
        "",
    ]
    header = [
        "row",
        "conc",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "ratio",
        "vs",
        "vs HTTP",
        "launch s",
        "load s",
        "RSS MB",
        "overhead MB",
        "GPU %",
    ]
    rows = []
    for row in result["rows"]:
        for i, run in enumerate(row["runs"]):
            first = i == 0
            rows.append(
                [
                    row["name"] if first else "",
                    str(run["concurrency"]),
                    _num(run["throughput_rps"]),
                    _num(run["p50_ms"]),
                    _num(run["p95_ms"]),
                    _num(run["p99_ms"]),
                    str(run["errors"]),
                    _num(run.get("ratio"), "{:.2f}"),
                    (row["compare_with"] or "") if first else "",
                    _num(run.get("vs_http_baseline"), "{:.2f}"),
                    _num(row["cold_start"].get("launch_s"), "{:.2f}") if first else "",
                    _num(row["cold_start"].get("load_s"), "{:.2f}") if first else "",
                    _num(row["memory"].get("rss_mb"), "{:.0f}") if first else "",
                    _num(row["memory"].get("overhead_mb"), "{:.0f}") if first else "",
                    _num(run.get("gpu_util_pct")),
                ]
            )
    lines.append(table(rows, header))
    lines.append("")
    for row in result["rows"]:
        lines.append(f"{row['name']}: {row['runtime']}; sends {row['payload']}; {row['work']}")
    batch = result.get("batch_comparison")
    if batch:
        lines.append(
            f"batch {batch['batch']}, one caller: {batch['eager_runtime']} {batch['eager']['items_per_s']:.1f} items/s, "
            f"ONNX (onnxruntime) {batch['onnx']['items_per_s']:.1f} items/s: {batch['onnx_over_eager']:.2f}x"
        )
    for goal in result.get("goals", []):
        ratio = goal.get("peak_ratio", goal.get("ratio"))
        lines.append(
            f"{'met   ' if goal['met'] else 'missed'} {goal['goal']}: {ratio:.2f}"
            + (f" (lowest at one concurrency {goal['min_ratio']:.2f})" if goal.get("min_ratio") is not None else "")
        )
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    """p50 (dashed) and p95 (solid) latency against throughput, one colour per row, points labelled by concurrency."""
    try:
        import matplotlib
    except ImportError:
        from ..errors import EnvironmentProblem

        raise EnvironmentProblem(
            "--plot needs matplotlib, which is not installed", "pip install matplotlib (or pip install -e '.[all]')"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    for index, row in enumerate(result["rows"]):
        runs = [r for r in row["runs"] if r["p95_ms"] is not None]
        if not runs:
            continue
        color = f"C{index % 10}"
        xs = [r["throughput_rps"] for r in runs]
        ax.plot(xs, [r["p95_ms"] for r in runs], "-o", color=color, label=f"{row['name']} (p95)")
        ax.plot(xs, [r["p50_ms"] for r in runs], "--", color=color, alpha=0.6)
        for r in runs:
            ax.annotate(
                f"c={r['concurrency']}",
                (r["throughput_rps"], r["p95_ms"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color=color,
            )
    host = result["host"]
    ax.set_title(
        f"pack bench {result['model']}: {host.get('cpu_count')} CPU cores, GPU {host.get('gpu') or 'none'} (dashed: p50)",
        fontsize=10,
    )
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
