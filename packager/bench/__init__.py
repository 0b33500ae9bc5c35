"""`pack bench`: the same build served in-process and by every server pack deploys to, measured side by side.

Rows (see docs/bench.md):
    inprocess-eager        pack's TorchServe handler code in this process, eager PyTorch model, image bytes in
    inprocess-onnx         the same handler code with onnxruntime (the runtime the servers serve by default)
    inprocess-onnx-tensor  onnxruntime alone on the pre-processed tensor
    <target>               one per target with the `Benchable` capability (packager/targets/capabilities.py),
                           deployed by the bench and sent what its profile says (TorchServe and FastAPI: the end
                           user's request; Triton: the pre-processed tensor), compared with the in-process row its
                           endpoint names
plus an eager-vs-ONNX comparison at one batch size. With the HTTP baseline's row (FastAPI's), the other servers' rows
are also compared with it (`vs_http_baseline`): what the server costs beyond plain HTTP. Servers run from a temporary
store and are stopped at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..console import terminate_interrupts
from ..errors import UsageError
from ..report.build_report import BuildReport
from ..report.store import drop_scratch, leftover_scratch, scratch_store
from ..serve.settings import SETTINGS
from .rows import goals, in_process_rows, make_row, ratios
from .settings import profiles, row_settings, tuned_figures, vs_tuned

if TYPE_CHECKING:
    import numpy as np

    from .targets import Launched

logger = logging.getLogger(__name__)

INPROCESS = "inprocess"  # the in-process rows; every other row is a target's


def bench_targets() -> list[str]:
    """What --targets may name: the in-process rows, then every target with a bench profile, in the registry's order."""
    return [INPROCESS, *profiles()]


@dataclass
class BenchOptions:
    model: str
    version: str | None = None
    store: Path = Path("model_store")
    targets: list[str] = field(default_factory=bench_targets)
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 32])
    requests: int = 200
    time_limit_s: float = 120.0
    warmup: int = 2
    threads: int | None = None  # intra-op threads in-process and in every server that has the setting; None: defaults
    batch: int = 8
    timeout: float = 180.0
    settings: dict[str, Any] = field(default_factory=dict)  # server settings given (deploy option names; None: not given)
    command: str = ""


def parse_list(text: str, what: str, cast: Callable[[str], Any] = str) -> list[Any]:
    try:
        items = [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--{what} {text!r} is not a comma-separated list", f"e.g. --{what} 1,8,32") from None
    if not items:
        raise UsageError(f"--{what} is empty")
    return items


def check_options(o: BenchOptions) -> None:
    known = bench_targets()
    unknown = [t for t in o.targets if t not in known]
    if unknown:
        raise UsageError(f"unknown bench target {unknown[0]!r}", f"use {', '.join(known)}")
    for name, value in {**o.settings, "threads": o.threads}.items():  # before anything is built or launched
        if name in SETTINGS and value is not None:
            SETTINGS[name].check(value)
    if any(c < 1 or c > 256 for c in o.concurrency):
        raise UsageError("--concurrency values must be between 1 and 256")
    if o.requests < 1:
        raise UsageError("--requests must be at least 1")
    if o.time_limit_s <= 0:
        raise UsageError("--time-limit must be positive")


def _host() -> dict[str, Any]:
    from .gpu import gpu_name

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem = None
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for mod in ("torch", "onnxruntime", "numpy"):
        m = sys.modules.get(mod)
        versions[mod] = getattr(m, "__version__", None) if m else None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": mem,
        "gpu": gpu_name(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def _locate(o: BenchOptions, scratch: Path) -> tuple[Path, BuildReport]:
    from ..report.store import find_build, versions

    if versions(o.store, o.model) or o.version is not None:
        from ..report.integrity import intact_build

        return intact_build(o.store, o.model, o.version)  # bench deploys it: only a build that matches its report
    from ..registry import get_entry

    if get_entry(o.model) is None:
        find_build(o.store, o.model, None)  # raises the usual "no build" error
    from ..build.pipeline import build
    from ..build.plan import resolve
    from ..targets import packagers

    logger.info(
        f"no build of {o.model} in {o.store}: building it into the bench's temporary store "
        f"(`pack build {o.model}` once to skip this)"
    )
    report, folder = build(
        resolve(o.model, None, {"device": "cpu"}), scratch / "builds", False, iterations=0, packagers=packagers()
    )
    return folder, report


def _run_one(name: str, make_caller: Any, c: int, o: BenchOptions) -> dict[str, Any]:
    from .gpu import GpuSampler
    from .load import run_load, warm_up

    warm_up(make_caller, c, o.warmup)  # as `pack tune` warms each point
    with GpuSampler() as gpu:
        result = run_load(make_caller, o.requests, c, o.time_limit_s)
    summary = result.summary()
    summary["gpu_util_pct"] = gpu.mean_util_pct
    summary["load_average"] = round(os.getloadavg()[0], 2)
    logger.info(
        f"{name} c={c}: {summary['throughput_rps']:.1f} req/s, p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms"
        + (f", {summary['errors']} error(s): {summary['error_samples'][0]}" if summary["errors"] else "")
        + (" (time limit reached)" if summary["timed_out"] else "")
    )
    return summary


@dataclass
class _Payload:
    """What the rows send: the request body users send (image bytes or tensor JSON), and the pre-processed tensors
    (what Triton's row is sent; made whenever it is a target)."""

    body: bytes
    content_type: str
    description: str
    arrays: list[np.ndarray] | None


@dataclass
class _Servers:
    """The servers one bench launches into its temporary store: launched (stopped at the end, also on errors and
    Ctrl-C), deployed, and what stopping each found."""

    store: Path
    launched: list[str] = field(default_factory=list)
    served: dict[str, Launched] = field(default_factory=dict)
    stopped: list[dict[str, Any]] = field(default_factory=list)

    def _stop(self, target: str) -> None:
        server = self.served.get(target)
        self.stopped.append(_stop(target, self.store, server.pids if server is not None else (lambda: [])))

    def stop_all(self) -> None:
        for target in list(self.launched):
            self._stop(target)
            self.launched.remove(target)

    def stop_left(self) -> None:
        """After an error: stop what is still launched, going on past a server that cannot be stopped."""
        for target in list(self.launched):
            try:
                self._stop(target)
            except Exception as exc:  # keep stopping the others; say what is left
                logger.warning(f"could not stop the bench's {target}: {exc}")


def run_bench(o: BenchOptions) -> dict[str, Any]:
    check_options(o)
    started = time.time()
    host = _host()
    if host["load_average"][0] >= 0.5:
        logger.warning(
            f"the machine is busy (load average {host['load_average'][0]}); timings will be lower than on a quiet machine"
        )
    fresh = not Path(o.store).exists()  # a bench of a model built on the fly leaves no empty store behind
    for left in leftover_scratch(o.store):  # a killed tune's or bench's folder whose servers are all stopped
        drop_scratch(left)
    scratch = scratch_store(o.store, "bench")  # where `pack status` and `pack stop` find its servers if pack is killed
    servers = _Servers(scratch / "store")
    try:
        with terminate_interrupts():  # SIGTERM stops the bench's servers like Ctrl-C does
            folder, report = _locate(o, scratch)
            prepared, extra = _measured_rows(o, folder, report, servers)
            servers.stop_all()
            rows = [r for r, _ in prepared]
    finally:
        servers.stop_left()
        kept = not drop_scratch(scratch)  # kept while a server of it is recorded: `pack status` lists it
        if kept:
            logger.warning(f"a server of this bench is still recorded under {scratch}; `pack stop` stops it")
        elif fresh:
            with contextlib.suppress(OSError):
                Path(o.store).rmdir()  # made for the scratch folder only: removed when empty
    ratios(rows)
    batch = extra.get("batch")
    notes = _notes(o, rows)
    host["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "bench": 1,
        "command": o.command,
        "model": report.name,
        "version": report.version,
        "build": str(folder.resolve()) if folder.exists() else None,
        "task": report.task,
        "weights": report.weights,
        "host": host,
        "settings": {
            "requests": o.requests,
            "concurrency": o.concurrency,
            "time_limit_s": o.time_limit_s,
            "warmup_per_caller": o.warmup,
            "client": "closed loop, one keep-alive HTTP connection per caller thread, 127.0.0.1",
        },
        "rows": rows,
        "batch_comparison": batch,
        "goals": goals(rows, batch, report.name, profiles()),
        "servers_stopped": servers.stopped,
        "notes": notes,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
    }


def _measured_rows(
    o: BenchOptions, folder: Path, report: BuildReport, servers: _Servers
) -> tuple[list[tuple[dict[str, Any], Any]], dict[str, Any]]:
    """Every row, measured at every concurrency: [(row, make_caller)], and the in-process memory / batch figures."""
    from . import inprocess as ip

    body, content_type, payload = ip.request_payload(folder, report)
    prepared: list[tuple[dict[str, Any], Any]] = []
    extra: dict[str, Any] = {"rss": {}, "batch": None}
    arrays = None
    known = profiles()
    if INPROCESS in o.targets:
        prepared, arrays, extra = in_process_rows(folder, report, o, body, payload)
    elif any(known[t].tensors for t in o.targets if t in known):
        arrays = ip.preprocessed(ip.handler_instance(folder, report, lambda a: a, "onnx"), body)
    sent = _Payload(body, content_type, payload, arrays)
    for target in [t for t in o.targets if t != INPROCESS]:  # deployed one after the other: cold starts do not overlap
        prepared.append(_server_row(o, folder, report, servers, target, sent, extra))
    # Every row at one concurrency, then the next concurrency: rows compared with each other are measured minutes
    # apart at most, so a change in the machine's load moves them together.
    for c in o.concurrency:
        for row, make_caller in prepared:
            run = _run_one(row["name"], make_caller, c, o)
            figures = vs_tuned(run, row.get("tuned"))
            if figures:
                run["vs_tuned"] = figures
            row["runs"].append(run)
    _server_memory(prepared, servers.served)
    return prepared, extra


def _server_row(
    o: BenchOptions,
    folder: Path,
    report: BuildReport,
    servers: _Servers,
    name: str,
    sent: _Payload,
    extra: dict[str, Any],
) -> tuple[dict[str, Any], Any]:
    """Launch the target `name` in the bench's store and deploy the build to it, with its settings (the flag, else
    the tuned value, else its bench default); its row, ready to run."""
    from ..targets import Request, get_target
    from .targets import launch, runtime

    known = profiles()
    profile = known[name]
    if profile.tensors and sent.arrays is None:  # _measured_rows() makes them whenever such a target is benched
        raise RuntimeError(f"the bench has no pre-processed tensors to send to {name}")
    settings, tuned = row_settings(report, name, profile, {**o.settings, "threads": o.threads})
    servers.launched.append(name)
    request = Request(sent.body, sent.content_type, sent.description, sent.arrays or [])
    server = launch(get_target(name), folder, report, servers.store, request, o.timeout, settings)
    servers.served[name] = server
    with_baselines = INPROCESS in o.targets
    onnx = server.deploy.get("format") == "onnx"
    base_mb = (extra["rss"].get("onnx" if onnx else "eager") or {}).get("rss_mb")
    row = make_row(
        name,
        name,
        runtime(server, profile),
        server.payload,
        profile.work,
        server.compare_with if with_baselines else None,
        server.cold_start,
        {"rss_mb": None, "rss_after_deploy_mb": server.memory_mb(), "inprocess_rss_mb": base_mb, "overhead_mb": None},
        {**server.settings, **({"tuned": True} if tuned else {})},
        server.deploy["served_file"],  # what the deploy says it serves (the in-process rows run the same file)
    )
    row["tuned"] = tuned_figures(report, name, server.settings)  # what a run at its concurrency should reproduce
    same = profile.same_runtime if onnx and profile.same_runtime != server.compare_with else None
    row["same_runtime_baseline"] = same if with_baselines else None
    http = next((t for t in o.targets if t in known and known[t].http_baseline), None)
    row["http_baseline"] = http if http != name else None
    return row, server.make_caller(max(o.timeout, 60.0))


def _server_memory(prepared: list[tuple[dict[str, Any], Any]], served: dict[str, Launched]) -> None:
    """Each server row's memory after the load: the larger of its figures after deploy and now, and its overhead
    over the in-process row with the same runtime."""
    for target, server in served.items():
        row = next(r for r, _ in prepared if r["name"] == target)
        memory = row["memory"]
        after = server.memory_mb()
        memory["rss_mb"] = max(x for x in (memory["rss_after_deploy_mb"], after, 0.0) if x is not None) or None
        memory["processes"] = len(server.pids())
        if memory["rss_mb"] and memory["inprocess_rss_mb"]:
            memory["overhead_mb"] = round(memory["rss_mb"] - memory["inprocess_rss_mb"], 1)


def _notes(o: BenchOptions, rows: list[dict[str, Any]]) -> list[str]:
    notes = []
    for row in rows:
        tuned = row.get("tuned")
        if tuned and tuned.get("concurrency") not in o.concurrency:
            notes.append(
                f"{row['name']} runs at the settings pack tune chose, measured there at concurrency {tuned['concurrency']}: "
                f"add {tuned['concurrency']} to --concurrency to compare (vs_tuned)"
            )
    if INPROCESS not in o.targets:
        notes.append("no in-process rows (add inprocess to --targets): no ratios, no memory overhead")
    cpus = os.cpu_count()
    if cpus and max(o.concurrency) > 4 * cpus:
        notes.append(f"concurrency {max(o.concurrency)} on {cpus} CPU cores: latency grows with the queue, throughput does not")
    return notes


def _stop(target: str, store: Path, pids: Callable[[], list[int]]) -> dict[str, Any]:
    from ..serve.processes import pid_alive
    from ..targets import get_target
    from .targets import stop

    result = stop(get_target(target), store)
    left = [p for p in pids() if pid_alive(p)]
    return {"target": target, "stopped": bool(result.get("stopped")), "processes_left": left}
