"""The Prometheus text pack reads for `pack status` (packager/serve/metrics.py) and the v2 curl line `pack deploy` prints
(packager/serve/oip.py), offline."""

from __future__ import annotations

from packager.serve.metrics import Families, parse, per_model, summary_lines
from packager.serve.oip import curl_line

TRITON_TEXT = """# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="tiny",version="1"} 4
nv_inference_request_failure{model="tiny",version="1"} 1
nv_inference_request_duration_us{model="tiny",version="1"} 12500
nv_inference_request_success{model="a \\"quoted\\" name",version="2"} 0
nv_gpu_utilization{gpu_uuid="x"} 0.5
not a sample line
"""
TRITON = Families(
    "nv_inference_request_success", "nv_inference_request_duration_us", "model", "version", "nv_inference_request_failure"
)


def test_counters_become_requests_failures_and_mean_latency() -> None:
    samples = parse(TRITON_TEXT)
    assert samples[0].name == "nv_inference_request_success" and samples[0].labels == {"model": "tiny", "version": "1"}
    assert any(s.labels.get("model") == 'a "quoted" name' for s in samples)
    rows = per_model(samples, TRITON)
    assert rows == [
        {"model": 'a "quoted" name', "version": "2", "requests": 0, "failures": 0, "latency_ms_mean": None},
        {"model": "tiny", "version": "1", "requests": 4, "failures": 1, "latency_ms_mean": 2.5},
    ]
    lines = summary_lines({"url": "http://127.0.0.1:1/metrics", "models": rows})
    assert lines[0] == "metrics: http://127.0.0.1:1/metrics (Prometheus)"
    assert lines[2] == "  tiny v1: 4 request(s), 1 failed, 2.5 ms mean"
    assert summary_lines({"url": "u", "error": "no answer", "models": []}) == ["metrics: u (unreadable: no answer)"]


def test_the_curl_line_reads_the_token_when_it_runs() -> None:
    line = curl_line("http://127.0.0.1:1/v2/models/tiny/infer", "/tmp/requests/tiny.v1.json", "/s/key_file.json")
    assert line.startswith("curl -sS -X POST http://127.0.0.1:1/v2/models/tiny/infer -H 'Content-Type: application/json'")
    assert (
        "$(python3 -c 'import json,sys; a=sys.argv; print(json.load(open(a[1]))[a[2]][a[3]])' /s/key_file.json inference key)"
        in line
    )
    assert line.endswith("--data-binary @/tmp/requests/tiny.v1.json")
    assert "Authorization" not in curl_line("http://h/v2/models/m/infer", "/r.json")
