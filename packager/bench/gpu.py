"""GPU utilisation while a load runs: NVML (nvidia-ml-py) sampled every 100 ms, only when an NVIDIA GPU is present.
On a host without one every figure is None."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any


def gpu_name() -> str | None:
    handle = _handle()
    if handle is None:
        return None
    import pynvml

    name = pynvml.nvmlDeviceGetName(handle)
    return name.decode() if isinstance(name, bytes) else str(name)


def _handle() -> Any:
    if not Path("/dev/nvidiactl").exists():
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() < 1:
            return None
        return pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # no driver, no library: no GPU figures
        return None


class GpuSampler:
    """with GpuSampler() as s: ...; s.mean_util_pct -> mean utilisation of GPU 0 over the block (None without a GPU)."""

    def __init__(self, interval_s: float = 0.1):
        self.interval_s = interval_s
        self.samples: list[int] = []
        self.memory_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle = _handle()

    def __enter__(self) -> GpuSampler:
        if self._handle is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="pack-bench-gpu")
            self._thread.start()
        return self

    def _loop(self) -> None:
        import pynvml

        while not self._stop.wait(self.interval_s):
            try:
                self.samples.append(int(pynvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))
                used = pynvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
                self.memory_mb = max(self.memory_mb or 0.0, round(used, 1))
            except Exception:
                return

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    @property
    def mean_util_pct(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None
