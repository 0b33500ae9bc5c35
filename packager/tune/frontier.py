"""What `pack tune` makes of its measured points: the throughput / p99 Pareto frontier, the best point under the
latency bound, a table and a PNG.

A point is {"settings": {...}, "throughput_rps", "p50_ms", "p99_ms", "stable", ...}; a point that failed (deploy,
smoke test or errors under load) carries "error" and is on no frontier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIGURES = ("throughput_rps", "p50_ms", "p99_ms", "stable")


def served(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in points if not p.get("error") and p.get("throughput_rps") and p.get("p99_ms") is not None]


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """a is at least as good as b on both axes (more requests/s, lower p99) and better on one."""
    at_least = a["throughput_rps"] >= b["throughput_rps"] and a["p99_ms"] <= b["p99_ms"]
    return bool(at_least and (a["throughput_rps"] > b["throughput_rps"] or a["p99_ms"] < b["p99_ms"]))


def frontier(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point dominates, by throughput (highest first)."""
    ok = served(points)
    front = [p for p in ok if not any(dominates(q, p) for q in ok if q is not p)]
    return sorted(front, key=lambda p: (-p["throughput_rps"], p["p99_ms"]))


def best(points: list[dict[str, Any]], p99_bound_ms: float | None) -> dict[str, Any] | None:
    """The highest throughput whose p99 is within the bound (any p99 without one), the lower p99 on a tie: always a
    point of the frontier. None when no point meets the bound."""
    ok = [p for p in served(points) if p99_bound_ms is None or p["p99_ms"] <= p99_bound_ms]
    if not ok:
        return None
    return max(ok, key=lambda p: (p["throughput_rps"], -p["p99_ms"]))


def closest(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """With no point under the bound: the lowest p99 (where the search goes next)."""
    ok = served(points)
    return min(ok, key=lambda p: p["p99_ms"]) if ok else None


def public(point: dict[str, Any]) -> dict[str, Any]:
    """A point as `--json` shows it on the frontier: its settings and figures."""
    return {"settings": point["settings"], **{k: point.get(k) for k in FIGURES}}


def describe(settings: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())


def table(points: list[dict[str, Any]], front: list[dict[str, Any]], chosen: dict[str, Any] | None) -> str:
    on_front = {id(p) for p in front}
    lines = [f"{'settings':<58} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  {'stable':<6} note"]
    for p in sorted(points, key=lambda p: -(p.get("throughput_rps") or 0)):
        if p.get("error"):
            lines.append(f"{describe(p['settings']):<58} {'-':>8} {'-':>8} {'-':>8}  {'-':<6} failed: {p['error'][:60]}")
            continue
        note = "best" if p is chosen else ("frontier" if id(p) in on_front else "")
        lines.append(
            f"{describe(p['settings']):<58} {p['throughput_rps']:>8.1f} {p['p50_ms']:>8.1f} {p['p99_ms']:>8.1f}  "
            f"{'yes' if p.get('stable') else 'no':<6} {note}"
        )
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> Path:
    """Every measured point (grey), the frontier (line) and the chosen one (star), p99 against throughput."""
    try:
        import matplotlib
    except ImportError:
        from ..errors import EnvironmentProblem

        raise EnvironmentProblem("--plot needs matplotlib, which is not installed", "pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ok = served(doc["points"])
    ax.scatter([p["throughput_rps"] for p in ok], [p["p99_ms"] for p in ok], color="0.6", s=18, label="measured")
    front = sorted(doc["frontier"], key=lambda p: p["throughput_rps"])
    ax.plot([p["throughput_rps"] for p in front], [p["p99_ms"] for p in front], "-o", color="C0", label="frontier")
    if doc.get("p99_bound_ms"):
        ax.axhline(doc["p99_bound_ms"], color="C3", linestyle="--", linewidth=1, label=f"p99 bound {doc['p99_bound_ms']} ms")
    if doc.get("best"):
        b = doc["best"]
        ax.plot([b["throughput_rps"]], [b["p99_ms"]], "*", color="C2", markersize=14, label=describe(b["settings"]))
    ax.set_title(f"pack tune {doc['model']} on {doc['target']}: concurrency {doc['concurrency']}", fontsize=10)
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


__all__ = ["best", "closest", "dominates", "frontier", "plot", "public", "table"]
