"""Prometheus metrics of the servers pack launches, read for `pack status`: the text exposition format parsed into
samples, and per-model request counts and mean latency from a server's own counters (each target names its metric
families: Triton `nv_inference_request_success` / `_failure` / `nv_inference_request_duration_us`, TorchServe
`ts_inference_requests_total` / `ts_inference_latency_microseconds`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from .http import HttpClient, HttpError

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (comments and malformed lines are skipped)."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if not match or line.startswith("#"):
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(match.group(2) or "")}
        samples.append(Sample(match.group(1), labels, value))
    return samples


@dataclass(frozen=True)
class Families:
    """Which metric families and labels carry a server's per-model counters."""

    success: str
    latency_us: str  # cumulative microseconds over the counted requests
    model_label: str
    version_label: str
    failure: str | None = None


class _MetricsClient(HttpClient):
    server = "the metrics endpoint"
    api = "a Prometheus metrics endpoint"


def per_model(samples: list[Sample], families: Families) -> list[dict[str, Any]]:
    """[{model, version, requests, failures, latency_ms_mean}] summed over the other labels, sorted."""
    totals: dict[tuple[str, str], dict[str, float]] = {}
    wanted = {families.success: "requests", families.latency_us: "latency_us"}
    if families.failure:
        wanted[families.failure] = "failures"
    for sample in samples:
        field = wanted.get(sample.name)
        if field is None:
            continue
        key = (sample.labels.get(families.model_label, ""), sample.labels.get(families.version_label, ""))
        entry = totals.setdefault(key, {"requests": 0.0, "failures": 0.0, "latency_us": 0.0})
        entry[field] += sample.value
    rows = []
    for (model, version), entry in sorted(totals.items()):
        count = entry["requests"] + entry["failures"]
        mean = entry["latency_us"] / count / 1000 if count else None
        rows.append(
            {
                "model": model,
                "version": version,
                "requests": int(entry["requests"]),
                "failures": int(entry["failures"]),
                "latency_ms_mean": round(mean, 3) if mean is not None else None,
            }
        )
    return rows


def read(url: str, families: Families, timeout: float = 5.0) -> dict[str, Any]:
    """{"url", "models": per_model rows} from a metrics endpoint; {"url", "error"} when it cannot be read (status goes
    on without it)."""
    try:
        answer = _MetricsClient(url, timeout=timeout).request("GET", "")
    except HttpError as exc:
        return {"url": url, "error": str(exc), "models": []}
    return {"url": url, "models": per_model(parse(answer.body.decode("utf-8", "replace")), families)}


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """What `pack status` prints about a server's metrics."""
    if "error" in metrics:
        return [f"metrics: {metrics['url']} (unreadable: {metrics['error']})"]
    lines = [f"metrics: {metrics['url']} (Prometheus)"]
    for row in metrics["models"]:
        mean = f", {row['latency_ms_mean']} ms mean" if row["latency_ms_mean"] is not None else ""
        version = f"v{row['version']}" if str(row["version"]).isdigit() else row["version"]  # TorchServe: "default"
        lines.append(f"  {row['model']} {version}: {row['requests']} request(s), {row['failures']} failed{mean}")
    return lines
