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


WARMUP_S = 1.0  # seconds of untimed load before every measurement, by `pack bench` and `pack tune` alike


def warm_up(make_caller: Callable[[], Caller], concurrency: int, per_caller: int) -> None:
    """The untimed load before a measurement, one rule for `pack bench` and `pack tune` (so a bench at the tuned
    settings measures a server as warm as the tune did): `per_caller` requests from each of `concurrency` callers,
    then WARMUP_S seconds of closed-loop load at that concurrency. `per_caller` 0: none at all."""
    if per_caller > 0:
        run_load(make_caller, requests=10**9, concurrency=concurrency, time_limit_s=WARMUP_S, warmup=per_caller)


def run_load(
    make_caller: Callable[[], Caller], requests: int, concurrency: int, time_limit_s: float, warmup: int = 0
) -> LoadResult:
    """Send `requests` requests from `concurrency` threads (closed loop); stop early at `time_limit_s`.

    Each thread first sends `warmup` untimed requests of its own (not counted), then all threads start the timed
    part together. Exceptions in a call count as errors (the first few messages are kept); the loop goes on.
    """
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be at least 1")
    loop = _ClosedLoop(make_caller, requests, concurrency, time_limit_s, warmup)
    threads = [threading.Thread(target=loop.worker, name=f"pack-bench-{i}", daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    loop.wait(threads)
    result = loop.result
    result.seconds = time.perf_counter() - loop.start
    if loop.setup_errors:
        result.errors += len(loop.setup_errors)
        result.error_samples = (loop.setup_errors + result.error_samples)[:MAX_ERROR_SAMPLES]
    return result


class _ClosedLoop:
    """One run_load: the callers' shared request counter, stop flag, start barrier, clock and result."""

    def __init__(
        self, make_caller: Callable[[], Caller], requests: int, concurrency: int, time_limit_s: float, warmup: int
    ) -> None:
        self.make_caller, self.requests, self.time_limit_s, self.warmup = make_caller, requests, time_limit_s, warmup
        self.result = LoadResult(concurrency=concurrency, requested=requests)
        self.lock = threading.Lock()
        self.issued = 0
        self.stop = threading.Event()
        self.start = 0.0
        self.deadline = 0.0
        self.ready = threading.Barrier(concurrency + 1, action=self.mark_start)
        self.setup_errors: list[str] = []

    def mark_start(self) -> None:  # run by one thread when every caller is warm, before any is released
        self.start = time.perf_counter()
        self.deadline = self.start + self.time_limit_s

    def next_index(self) -> int | None:
        with self.lock:
            if self.stop.is_set() or self.issued >= self.requests:
                return None
            if time.perf_counter() > self.deadline:
                self.result.timed_out = True
                self.stop.set()
                return None
            self.issued += 1
            return self.issued - 1

    def worker(self) -> None:
        call = self._warm_caller()
        try:
            self.ready.wait()
        except threading.BrokenBarrierError:
            return
        if call is None:
            return
        self._timed(call)

    def _warm_caller(self) -> Caller | None:
        """This thread's caller, after its untimed warm-up requests; None (a setup error) when it cannot be made."""
        call: Caller | None = None
        try:
            call = self.make_caller()
            for i in range(self.warmup):
                try:
                    call(-1 - i)
                except Exception:  # a failing warm-up shows up again in the timed part
                    pass
        except Exception as exc:
            with self.lock:
                self.setup_errors.append(f"{type(exc).__name__}: {exc}"[:300])
        return call

    def _timed(self, call: Caller) -> None:
        local: list[float] = []
        while True:
            index = self.next_index()
            if index is None:
                break
            t0 = time.perf_counter()
            try:
                call(index)
            except Exception as exc:
                with self.lock:
                    self.result.errors += 1
                    if len(self.result.error_samples) < MAX_ERROR_SAMPLES:
                        self.result.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            local.append(time.perf_counter() - t0)
        with self.lock:
            self.result.latencies_s.extend(local)

    def wait(self, threads: list[threading.Thread]) -> None:
        """Release the callers once all are warm, then wait for them (a call that never returns is left behind)."""
        try:
            # the warm-up has its own limit: the whole time limit again
            self.ready.wait(timeout=max(self.time_limit_s, 1.0) + 600.0)
        except threading.BrokenBarrierError:
            self.stop.set()
            self.mark_start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.2)
                    if time.perf_counter() > self.deadline + 60.0:  # a call that never returns
                        self.stop.set()
                        self.result.timed_out = True
                        break
        except KeyboardInterrupt:
            self.stop.set()
            raise
