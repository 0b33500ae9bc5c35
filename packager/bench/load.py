"""A bounded closed-loop load generator: a fixed number of requests, a fixed number of concurrent callers, a
wall-clock limit. Each caller sends its next request as soon as its previous one answered (closed loop), so the
offered load never exceeds `concurrency` requests in flight.

    run_load(make_caller, requests=200, concurrency=8, time_limit_s=60) -> LoadResult

`make_caller()` is called once per caller thread (so each thread can keep its own connection) and returns a function
`call(index)` that sends one request and raises on failure. Latencies are measured around `call`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Caller = Callable[[int], Any]
MAX_ERROR_SAMPLES = 3


@dataclass
class LoadResult:
    concurrency: int
    requested: int
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timed_out: bool = False

    def summary(self) -> dict[str, Any]:
        ok = len(self.latencies_s)
        ms = np.asarray(self.latencies_s, dtype=np.float64) * 1000.0

        def pct(q: float) -> float | None:
            return round(float(np.percentile(ms, q)), 2) if ok else None

        return {
            "concurrency": self.concurrency,
            "requests": self.requested,
            "completed": ok + self.errors,
            "ok": ok,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(ok / self.seconds, 2) if self.seconds > 0 and ok else 0.0,
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "p99_ms": pct(99),
            "mean_ms": round(float(ms.mean()), 2) if ok else None,
            "timed_out": self.timed_out,
        }


def run_load(
    make_caller: Callable[[], Caller], requests: int, concurrency: int, time_limit_s: float, warmup: int = 0
) -> LoadResult:
    """Send `requests` requests from `concurrency` threads (closed loop); stop early at `time_limit_s`.

    Each thread first sends `warmup` untimed requests of its own (not counted), then all threads start the timed
    part together. Exceptions in a call count as errors (the first few messages are kept); the loop goes on.
    """
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be at least 1")
    result = LoadResult(concurrency=concurrency, requested=requests)
    lock = threading.Lock()
    issued = [0]
    stop = threading.Event()
    start_box: list[float] = [0.0]
    deadline_box: list[float] = [0.0]

    def mark_start() -> None:  # run by one thread when every caller is warm, before any is released
        start_box[0] = time.perf_counter()
        deadline_box[0] = start_box[0] + time_limit_s

    ready = threading.Barrier(concurrency + 1, action=mark_start)
    setup_errors: list[str] = []

    def next_index() -> int | None:
        with lock:
            if stop.is_set() or issued[0] >= requests:
                return None
            if time.perf_counter() > deadline_box[0]:
                result.timed_out = True
                stop.set()
                return None
            issued[0] += 1
            return issued[0] - 1

    def worker() -> None:
        call: Caller | None = None
        try:
            call = make_caller()
            for i in range(warmup):
                try:
                    call(-1 - i)
                except Exception:  # a failing warm-up shows up again in the timed part
                    pass
        except Exception as exc:
            with lock:
                setup_errors.append(f"{type(exc).__name__}: {exc}"[:300])
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return
        if call is None:
            return
        local: list[float] = []
        while True:
            index = next_index()
            if index is None:
                break
            t0 = time.perf_counter()
            try:
                call(index)
            except Exception as exc:
                with lock:
                    result.errors += 1
                    if len(result.error_samples) < MAX_ERROR_SAMPLES:
                        result.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            local.append(time.perf_counter() - t0)
        with lock:
            result.latencies_s.extend(local)

    threads = [threading.Thread(target=worker, name=f"pack-bench-{i}", daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    try:
        # the warm-up has its own limit: the whole time limit again
        ready.wait(timeout=max(time_limit_s, 1.0) + 600.0)
    except threading.BrokenBarrierError:
        stop.set()
        mark_start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.2)
                if time.perf_counter() > deadline_box[0] + 60.0:  # a call that never returns
                    stop.set()
                    result.timed_out = True
                    break
    except KeyboardInterrupt:
        stop.set()
        raise
    result.seconds = time.perf_counter() - start_box[0]
    if setup_errors:
        result.errors += len(setup_errors)
        result.error_samples = (setup_errors + result.error_samples)[:MAX_ERROR_SAMPLES]
    return result
