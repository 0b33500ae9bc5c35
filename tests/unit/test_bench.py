"""`pack bench` pieces that need no server: the bounded load generator, and option errors before anything starts.
(Real runs against TorchServe and Triton: tests/integration/test_bench_servers.py.)"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.helpers.cli import invoke


def test_load_generator_is_bounded() -> None:
    from packager.bench.load import run_load

    calls: list[int] = []

    def make() -> Any:
        def call(i: int) -> None:
            calls.append(i)
            if i == 3:
                raise RuntimeError("boom")
            time.sleep(0.002)

        return call

    result = run_load(make, requests=30, concurrency=4, time_limit_s=30, warmup=1).summary()
    assert result["ok"] + result["errors"] == 30 and result["errors"] == 1
    assert "boom" in result["error_samples"][0]
    assert len([c for c in calls if c >= 0]) == 30  # exactly the requested count; warm-ups are negative
    limited = run_load(make, requests=100000, concurrency=2, time_limit_s=0.3).summary()
    assert limited["timed_out"] and limited["completed"] < 100000


def test_bad_options_exit_2(tmp_path: Path) -> None:
    assert "unknown bench target 'nginx'" in invoke(
        "bench", "tiny", "--targets", "inprocess,nginx", "--store", str(tmp_path)
    ).error(2)
    assert "--concurrency" in invoke("bench", "tiny", "--concurrency", "1,x", "--store", str(tmp_path)).error(2)
