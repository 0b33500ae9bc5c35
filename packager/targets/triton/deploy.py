"""`pack deploy --target triton`: Triton's steps of the one deploy skeleton (packager/serve/deployflow.py).

Deploy: generate the repository entries from the build, check them offline, copy them into the server's repository
(keeping a backup of what was there), load them through the repository API, wait until ready, smoke-test with the
build's sample input against the recorded eager output. On any failure the previous entries are put back and
reloaded (or the new ones unloaded), so what served before keeps serving; exit 4.
With --url the entries are sent with the load request itself (config and files as load parameters); Triton's own
repository is untouched, so a rollback reloads the model from it, or unloads a model that was not there.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import DeployFailed, EnvironmentProblem, PackError, UsageError
from ...report.build_report import BuildReport
from ...report.formats import Served, served
from ...report.store import StoreLock, remove_leftovers
from ...serve.deployflow import Steps, run
from ...serve.http import ApiError, HttpError, translated
from ...serve.oip import curl_line, sample_request, write_request
from ...serve.settings import resolve
from ...serve.tasks import sample_image
from ..result import deploy_result, server_info, v2_infer_url
from ..watch import start as start_watcher
from . import config as cfg
from .check import check_repository, raise_on_errors
from .client import TritonHTTP, missing_backend
from .install import drop_backups, install, restore
from .manage import status, stop, undeploy
from .repository import (
    NATIVE_FORMAT,
    RepoOptions,
    auto_backend,
    generate,
    io_names,
    is_detection,
    model_names,
    serving_model,
    triton_version,
)
from .server import ServerState, TritonServer, available_backends, find_binary
from .smoke import detect, ensemble_smoke, smoke_test
from .tuning import served_settings, settings_of

logger = logging.getLogger(__name__)

__all__ = [
    "deploy",
    "status",
    "stop",
    "undeploy",
    "repo_options",
    "staged_entries",
    "smoke_test",
    "ensemble_smoke",
    "sample_image",
    "detect",
]


def repo_options(opts: Any, default_backend: str = "python", report: BuildReport | None = None) -> RepoOptions:
    """The repository options of a deploy or `pack repo`: each server setting by the one rule (serve/settings.py):
    the option, else what the build recorded for that backend (`pack tune` writes the best it measured there), else
    the default."""
    backend = opts.backend if opts.backend not in (None, "auto") else default_backend
    native = NATIVE_FORMAT.get(backend)
    if native and opts.format and opts.format != native:
        raise UsageError(
            f"--backend {backend} serves the {native} export, not {opts.format}", "use --backend python to serve any export"
        )
    fmt = native or (served(report, opts.format).format if report is not None else opts.format or "onnx")
    section = report.target("triton") if report is not None else {}
    recorded = (section.get("settings") or {}) if section.get("backend", "python") == backend else {}  # that backend's
    values = resolve(
        {
            "workers": opts.workers,
            "batch_size": opts.batch_size,
            "max_batch_delay_ms": opts.max_batch_delay_ms,
            "threads": opts.threads,
        },
        settings_of(recorded),
        {"workers": 1, "max_batch_delay_ms": 1, "threads": 0},  # batch_size: RepoOptions' default (8 when the model batches)
    )
    signed = (opts.extra or {}).get("signature")  # (model.sig, public key): --require-signature --public-key
    return RepoOptions(
        signature=(Path(signed[0]), Path(signed[1])) if signed else None,
        backend=backend,
        fmt=fmt,
        instances=int(values["workers"]),
        max_batch=values.get("batch_size"),
        max_queue_delay_us=int(values["max_batch_delay_ms"]) * 1000,
        threads=int(values["threads"]),
    )


@contextmanager
def staged_entries(
    build_dir: Path, report: BuildReport, ropts: RepoOptions, parent: Path
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Generate the build's entries into a fresh staging folder under `parent` and check them offline; yields
    (folder, description) and removes the folder afterwards, whatever happened."""
    parent.mkdir(parents=True, exist_ok=True)
    staged = parent / f".staging-{os.getpid()}"
    remove_leftovers(parent, ".staging-")  # of deploys whose pack was killed
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    try:
        section = generate(build_dir, report, ropts, staged)
        raise_on_errors(check_repository(staged))
        yield staged, section
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _files_of(entry: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(entry)): p.read_bytes()
        for p in sorted(entry.rglob("*"))
        if p.is_file() and p.parts[-2:][0] != "warmup" and p.name != cfg.CONFIG_FILE
    }


STEP_SUFFIXES = ("_preprocess", "_postprocess", "_ensemble")  # the generated entries around a model (tasks.py)


def step_owner(entry: str, index: set[str]) -> str | None:
    """The model whose generated entries include `entry`, or None: all three steps of its ensemble are in the
    repository, or `entry` is the endpoint `<model>_ensemble` beside its model (the python backend's one-instance
    layout: detection.py)."""
    for suffix in STEP_SUFFIXES:
        base = entry.removesuffix(suffix)
        if base == entry or not base:
            continue
        if all(base + s in index for s in STEP_SUFFIXES) or (suffix == "_ensemble" and base in index):
            return base
    return None


def refuse_collisions(names: list[str], base: str, index: set[str], url: str) -> None:
    """UsageError (exit 2), before anything is staged or loaded, when an entry the deploy of `base` would write is
    another model's ensemble step, or one of `base`'s own steps is already an entry of another model."""
    for name in names:
        owner = step_owner(name, index) if name in index else base
        if owner == base or (owner is None and name == base):
            continue
        whose = f"a step of {owner}'s ensemble ({owner}_ensemble)" if owner else "another model's entry"
        raise UsageError(
            f"{name} on {url} is {whose}; deploying {base} would replace it",
            "rebuild with another --name; pack never replaces another model's entries",
        )


class TritonSteps(Steps):
    server = "Triton"
    state: ServerState | None = None  # the local server (None with --url)

    def prepare(self) -> None:
        self.version = triton_version(self.report)
        self.store = Path(self.opts.store)
        self.local = TritonServer(self.store)
        self.backups: dict[str, Path | None] = {}
        self.fallback = self.opts.backend in (None, "auto") and bool(self.opts.url)  # native tried first at --url
        self._entries(self._backend())

    def _backend(self) -> str:
        """The --backend given, else the fastest this server has (repository.auto_backend)."""
        if self.opts.backend not in (None, "auto"):
            return str(self.opts.backend)
        if (self.opts.extra or {}).get("signature"):
            return "python"  # only pack's model.py checks a signature before it loads the export
        known = None
        if not self.opts.url:
            try:
                known = available_backends(find_binary(self.opts.server_binary))
            except PackError:  # no binary: the launch says so in its own words
                known = []
        return auto_backend(self.report, self.opts.format, known)

    def _entries(self, backend: str) -> None:
        """Generate and check the build's entries for `backend` in the staging folder."""
        self.ropts = repo_options(self.opts, default_backend=backend, report=self.report)
        self.names = model_names(self.report, self.ropts.backend)
        self.serving = serving_model(self.report, self.ropts.backend)
        self.staged, self.section = self.stack.enter_context(
            staged_entries(self.build_dir, self.report, self.ropts, self.local.root)
        )
        logger.info(f"repository entries for {self.name} v{self.version} ({self.ropts.backend} backend) pass the offline check")

    def _fall_back(self, exc: ApiError, loaded: list[str]) -> None:
        """The server at --url lacks the native backend auto chose: unload what this try loaded, serve on python."""
        logger.warning(f"{self.client.url} has no {self.ropts.backend} backend ({exc.message[:120]}); serving on python")
        for name in reversed(loaded):
            if name not in self.was_ready:
                self.client.unload(name, timeout=self.timeout)
        self.fallback = False
        self._entries("python")

    def connect(self) -> None:
        if self.opts.url:
            self.client = TritonHTTP(self.opts.url, timeout=self.timeout)
            if not self.client.ready():
                raise EnvironmentProblem(
                    f"no ready Triton server at {self.opts.url}", "check --url (the HTTP endpoint, e.g. http://127.0.0.1:8000)"
                )
            return
        t0 = time.perf_counter()
        self.state, self.launched = self.local.start(self.opts.server_binary, self.opts.host, self.timeout)
        if self.launched:
            self.timings["server_start_s"] = round(time.perf_counter() - t0, 3)
        self.client = TritonHTTP(self.state.url, timeout=self.timeout)

    def observe(self) -> None:
        if self.state:
            self.stack.enter_context(StoreLock(Path(self.state.repository)))
        with translated(
            "reading Triton's repository index", "pack needs --model-control-mode=explicit", refused=EnvironmentProblem
        ):
            before = self.client.states()
        refuse_collisions(self.names, self.report.name, set(before), self.client.url)
        self.was_ready = {n for n in self.names if before.get(n, {}).get("state") == "READY"}

    def stage(self) -> None:
        if self.state:
            self.doing = f"installing {', '.join(self.names)} into {self.state.repository}"
            self.stack.callback(lambda: drop_backups(self.backups))  # whatever is left at the end
            self.backups = install(
                self.staged, Path(self.state.repository), self.names, self.version, force=True, keep_backup=True
            )

    def load(self) -> None:
        self.doing = f"loading {', '.join(self.names)}"
        logger.info(f"{self.doing} on {self.client.url}")
        t0 = time.perf_counter()
        for i, name in enumerate(self.names):
            self.doing = f"loading {name}"
            try:
                if self.state:
                    self.client.load(name, timeout=self.timeout)
                else:
                    config = cfg.read(self.staged / name / cfg.CONFIG_FILE)
                    config.ClearField("model_warmup")  # warmup files cannot travel with a load request
                    self.client.load(
                        name, config_json=cfg.to_json(config), files=_files_of(self.staged / name), timeout=self.timeout
                    )
            except ApiError as exc:
                if missing_backend(exc, self.ropts.backend) and self.fallback:
                    self._fall_back(exc, self.names[:i])
                    return self.load()
                if missing_backend(exc, self.ropts.backend):
                    listing = (
                        f"it has: {', '.join(self.state.backends)}"
                        if self.state and self.state.backends
                        else "it does not say which it has"
                    )
                    raise EnvironmentProblem(
                        f"this tritonserver has no {self.ropts.backend} backend ({listing}; Triton said: {exc.message[:160]})",
                        "deploy with --backend python (runs the export inside Triton's python backend), "
                        "or use a Triton build with that backend",
                    ) from None
                raise
            if not self.client.model_ready(name, self.version):
                raise DeployFailed(f"{name} version {self.version} is not ready after loading", self.log_hint())
        self.timings["load_s"] = round(time.perf_counter() - t0, 3)
        logger.info(f"loaded in {self.timings['load_s']:.2f} s; smoke test")

    def smoke(self) -> dict[str, Any]:
        smoke = smoke_test(
            self.client.url, self.build_dir, self.report, self.ropts.backend, self.name, self.version, self.timeout
        )
        if smoke["passed"] and is_detection(self.report):
            ens = ensemble_smoke(self.client.url, self.serving, self.version, self.timeout)
            smoke["ensemble"] = ens
            if not ens["passed"]:
                return ens
        return smoke

    def commit(self) -> None:
        if self.state:
            self.local.record_deployment(
                self.name,
                {"version": self.version, "models": self.names, "backend": self.ropts.backend, "serving_model": self.serving},
            )
        drop_backups(self.backups)
        self.backups = {}

    # --- undo
    def undo_files(self) -> None:
        if self.state and self.backups:
            restore(Path(self.state.repository), self.backups)
        self.backups = {}

    def undo_server(self, interrupted: bool) -> list[str]:
        timeout = min(self.timeout, 30) if interrupted else self.timeout
        notes, problems = [], []
        for name in reversed(self.names):
            if name not in self.was_ready:
                try:
                    self.client.unload(name, timeout=timeout)
                    notes.append(f"unloaded {name}")
                except HttpError:
                    pass
        for name in self.names:
            if name in self.was_ready:
                try:
                    self.client.load(name, timeout=timeout)
                    notes.append(f"reloaded previous {name}")
                except HttpError as exc:
                    problems.append(f"could not reload previous {name}: {exc}")
        if (notes or problems) and not interrupted:  # after Ctrl-C the rollback is quiet
            logger.warning("rollback: " + "; ".join(notes + problems))
        return problems

    def stop_server(self) -> None:
        self.local.stop()

    def watch(self) -> None:
        if self.state:
            start_watcher(self.local, "triton", self.launched)

    def server_gone(self) -> bool:
        return self.state is not None and self.local.alive() is None

    def log_hint(self) -> str:
        return f"see the server log {self.state.log}" if self.state else "see the server's log"

    def still_serving(self) -> str:
        kept = [n for n in self.names if n in self.was_ready]
        return f"the previous {', '.join(kept)} keeps serving" if kept else "nothing was left loaded"

    def _v2_curl(self, model_url: str) -> str:
        """The ready-to-run v2 request of the build's sample to the model itself (its request file beside the state)."""
        names = io_names(self.report, self.ropts.backend)[0]
        body = sample_request(self.build_dir, self.report, names)
        return curl_line(model_url, write_request(self.store, "triton", self.report, body))

    def applied(self) -> dict[str, Any]:
        """The settings the server reports for the loaded model (workers, batch size, delay, threads): what it runs,
        which `pack bench` and `pack tune` record; empty when it does not say."""
        try:
            return served_settings(self.client.model_config(self.name))
        except (HttpError, ValueError, TypeError, AttributeError):
            return {}

    def result(self, smoke: dict[str, Any]) -> dict[str, Any]:
        url, version, state, serving = self.client.url, self.version, self.state, self.serving
        model_url = v2_infer_url(url, self.name, version)
        serving_url = v2_infer_url(url, serving, version)
        v2_curl = self._v2_curl(model_url)
        latency = smoke.get("latency_ms", {}).get("median")
        summary = (
            f"deployed {self.name} v{version} ({self.section['served_file']}) to Triton ({self.ropts.backend} backend) "
            f"at {url}; smoke test passed ({latency} ms median)"
            + (f"; ensemble {serving}: {smoke['ensemble']['detections']} detections" if "ensemble" in smoke else "")
            + f"\ninference: POST {serving_url}"
            + f"\nv2 request (the build's sample): {v2_curl}"
        )
        server = (
            server_info(self.launched, state.pid, state.log, repository=state.repository, backends=state.backends)
            if state
            else server_info(False)
        )
        return deploy_result(
            "triton",
            self.report,
            Served(self.section["format"], self.section["served_file"]),
            url=url,
            infer_url=model_url,
            v2_curl=v2_curl,
            smoke_test=smoke,
            timings=self.timings,
            server=server,
            summary=summary,
            serving_model=serving,
            serving_infer_url=serving_url,
            models=self.names,
            backend=self.ropts.backend,
            max_batch_size=self.section["max_batch_size"],
            **self.applied(),
            grpc_url=f"{state.host}:{state.grpc_port}" if state else None,
            metrics_url=f"http://{state.host}:{state.metrics_port}/metrics" if state else None,
        )


def deploy(build_dir: Path, report: BuildReport, opts: Any) -> dict[str, Any]:
    return run(TritonSteps(build_dir, report, opts))
