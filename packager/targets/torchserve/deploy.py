"""`pack deploy --target torchserve`: TorchServe's steps of the one deploy skeleton (packager/serve/deployflow.py).

A deploy registers the new version beside any version already serving, sets its workers, sends the build's sample
input through the inference API and compares the answer with the recorded eager output within the build's tolerances.
Only then does the new version become the default; when anything fails, the new version is unregistered again and the
previous default keeps serving (exit 4). A version registered already whose build changed since is rolled out
(rollout.py): the new archive is registered and smoke-tested under a temporary name, then replaces the old one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...report.build_report import BuildReport
from ...report.formats import served
from ...serve.deployflow import Steps, run
from ...serve.http import ApiError, HttpError, is_loopback
from ...serve.oip import curl_line, sample_request, write_request
from ..options import DeployOptions
from ..result import deploy_result, server_info, v2_infer_url
from ..watch import start as start_watcher
from .config import settings_from
from .connection import MODEL_STORE_ENV, Connection, connect
from .manage import status, stop, undeploy
from .mar import choose_handler
from .rollout import Rollout, changed, refuse_default_with_others, replacing_command
from .server import TorchServeServer, read_tokens
from .smoke import smoke_test
from .staging import serve_file, stage_mar, tempdir

logger = logging.getLogger(__name__)

__all__ = ["deploy", "status", "undeploy", "stop", "smoke_test", "connect", "Connection", "TorchServeServer", "read_tokens"]


class TorchServeSteps(Steps):
    server = "TorchServe"
    _conn: Connection | None = None

    @property
    def conn(self) -> Connection:
        """The connection connect() made; every step after connect() runs only once it succeeded."""
        if self._conn is None:
            raise RuntimeError("a TorchServe deploy step ran before connect()")
        return self._conn

    def prepare(self) -> None:
        o = self.opts
        self.settings = settings_from(self.report, o.format, o.batch_size, o.max_batch_delay_ms, o.workers, o.threads)
        self.served = served(self.report, self.settings.format)  # what the archive packs
        self.signature = (o.extra or {}).get("signature")  # (model.sig, public key): the handler checks the model
        self.file_name = f"{self.name}.v{self.version}.mar"
        self.staged: Path | None = None  # the archive this command put into the server's model store
        self.local_copy: Path | None = None  # --url without a shared model store: served over loopback HTTP
        self.sent = False  # a registration request was sent
        self.unregistered = False
        self.rollout: Rollout | None = None  # a registered version whose build changed: replaced (rollout.py)

    def connect(self) -> None:
        conn = connect(self.opts, start=True)
        self._conn, self.launched = conn, conn.launched
        self.inference = conn.inference  # the smoke test's API: known (never guessed) before anything is staged
        self.timings["server_start_s"] = conn.server_seconds

    def observe(self) -> None:
        self.doing = f"reading the versions of {self.name} on TorchServe"
        described = self.conn.management.versions(self.name)
        self.previous_default = self.conn.management.default_version(self.name) if described else None
        self.already = any(str(d.get("modelVersion")) == self.version for d in described)
        store = self.conn.model_store
        if self.already and store is not None:  # a rebuilt version is rolled out, never reported deployed as it was
            if changed(
                store / self.file_name, self.build_dir, self.report, self.settings.format, self.served.file, self.signature
            ):
                versions = [str(d.get("modelVersion")) for d in described]
                refuse_default_with_others(self.name, self.version, self.previous_default, versions)
                local = self.conn.local
                self.rollout = Rollout(
                    self.conn.management,
                    store,
                    self.name,
                    self.version,
                    self.settings,
                    self.timeout,
                    local.drain_dir if local else None,
                    self.previous_default == self.version,
                )
                self.already = False
                logger.info(f"{self.name} v{self.version} changed since it was registered: rolling it out")

    def stage(self) -> None:
        if self.already:
            logger.info(f"{self.name} v{self.version} is already registered; checking it again")
            return
        self.doing = f"staging the archive of {self.name} v{self.version}"
        store = self.conn.model_store
        if self.rollout is not None and store is not None:  # beside the registered archive, which keeps serving
            self.rollout.clear_leftover()
            self.staged = store / self.rollout.next_file
            stage_mar(self.build_dir, self.report, self.settings, store, self.rollout.next_file, self.signature)
            return
        if store is not None:
            self.staged = store / self.file_name  # recorded first: an interrupted copy is removed too
            stage_mar(self.build_dir, self.report, self.settings, store, self.file_name, self.signature)
            return
        if not is_loopback(urllib.parse.urlsplit(self.conn.management.base_url).hostname or ""):
            raise UsageError(
                f"cannot hand the archive to the remote TorchServe at {self.conn.management.base_url}",
                f"set {MODEL_STORE_ENV} to a folder that is its model store (shared), or deploy on its host",
            )
        folder = self.stack.enter_context(tempdir())
        self.local_copy = stage_mar(
            self.build_dir, self.report, self.settings, folder, f"{self.name}.v{self.version}.{os.getpid()}.mar", self.signature
        )

    @property
    def registered_name(self) -> str:
        """The name the new archive is registered and smoke-tested under (a rollout's temporary one)."""
        return self.rollout.temp_name if self.rollout else self.name

    @contextlib.contextmanager
    def _archive_url(self) -> Iterator[str]:
        if self.rollout is not None:
            yield self.rollout.next_file
        elif self.local_copy is None:
            yield self.file_name  # a file of the server's model store
        else:
            with serve_file(self.local_copy, "127.0.0.1") as url:
                yield url

    def load(self) -> None:
        s, mgmt = self.settings, self.conn.management
        if not self.already:
            t0 = time.monotonic()
            self.doing = f"registering {self.name} v{self.version}"
            logger.info(f"{self.doing} (batch size {s.batch_size}, {s.min_workers} worker(s))")
            with self._archive_url() as url:
                self.sent = True
                try:
                    name, timeout = self.registered_name, self.timeout
                    mgmt.register(url, name, s.batch_size, s.max_batch_delay_ms, s.min_workers, s.response_timeout_s, timeout)
                except ApiError as exc:
                    if exc.status == 409:  # this very version was there already: nothing of ours to remove
                        self.sent = False
                    raise
            self.timings["register_s"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        self.doing = f"setting {s.min_workers} worker(s) for {self.name} v{self.version}"
        mgmt.scale(self.registered_name, self.version, s.min_workers, self.timeout)
        self.timings["scale_s"] = round(time.monotonic() - t0, 2)

    def smoke(self) -> dict[str, Any]:
        logger.debug(f"smoke test: sample input -> /predictions/{self.registered_name}/{self.version}")
        smoke = smoke_test(self.conn, self.build_dir, self.report, self.version, self.timeout, self.registered_name)
        self.timings["smoke_s"] = smoke["seconds"]
        return smoke

    def commit(self) -> None:
        if self.rollout is not None:
            self.doing = f"replacing the registered {self.name} v{self.version} with the new archive"
            self.rollout.switch()
            self.staged = None  # the rollout's own files are its to remove
            return
        self.doing = f"making {self.name} v{self.version} the default"
        self.conn.management.set_default(self.name, self.version)

    # --- undo
    def undo_files(self) -> None:
        if self.staged is not None:
            self.staged.unlink(missing_ok=True)
            self.staged = None

    def undo_server(self, interrupted: bool) -> list[str]:
        if self.rollout is not None:
            return self.rollout.undo()
        if self.already or not self.sent:
            return []  # nothing of this command's is registered
        mgmt = self.conn.management
        if interrupted:  # Ctrl-C: the server may still be registering it, so wait a little for it to appear
            deadline = time.monotonic() + min(self.timeout, 30.0)
            while True:
                try:
                    if any(str(d.get("modelVersion")) == self.version for d in mgmt.versions(self.name)):
                        mgmt.unregister(self.name, self.version)
                        return []
                except HttpError:
                    pass
                if time.monotonic() > deadline:
                    return []
                time.sleep(0.5)
        try:
            mgmt.unregister(self.name, self.version)
        except ApiError as exc:
            if exc.status == 404:
                return []  # it never got registered
            return [f"could not unregister {self.name} v{self.version}: {exc}"]
        self.unregistered = True
        logger.info(f"unregistered {self.name} v{self.version}")
        return []

    def stop_server(self) -> None:
        TorchServeServer(self.opts.store).stop()

    def watch(self) -> None:
        if self.conn.local is not None:
            start_watcher(self.conn.local, "torchserve", self.launched)

    def server_gone(self) -> bool:
        return self.conn.local is not None and self.conn.local.running() is None

    def log_hint(self) -> str | None:
        return self._conn.where_logs() if self._conn else None

    def still_serving(self) -> str:
        if self.rollout is not None:
            return f"the registered v{self.version} keeps serving (its previous files)"
        parts = ["it was unregistered"] if self.unregistered else []
        if self.already:
            parts.append(
                f"v{self.version} was registered before and stays as it was "
                f"(to replace it with this build: {replacing_command(self.name, self.version)})"
            )
        if self.previous_default and self.previous_default != self.version:
            parts.append(f"v{self.previous_default} is still the default")
        return "; ".join(parts)

    def result(self, smoke: dict[str, Any]) -> dict[str, Any]:
        conn, name, version, s = self.conn, self.name, self.version, self.settings
        info = _describe_one(conn, name, version)
        previous = self.previous_default
        url = conn.inference.base_url.rstrip("/")
        predictions_url = f"{url}/predictions/{name}"
        body = sample_request(self.build_dir, self.report)
        request = write_request(Path(self.opts.store), "torchserve", self.report, body)
        # TorchServe 0.12 routes POST /v2/models/<name>/infer (the default version, which this deploy just set; it has
        # no version routes) to the handler, which answers a v2 body in v2; /predictions/<name>/<version> takes the same
        model_url = v2_infer_url(url, name, None)
        v2_curl = curl_line(model_url, request, conn.token_file)
        workers = len(info.get("workers", []))
        batch_size = info.get("batchSize", s.batch_size)
        state = (conn.local.state() or {}) if conn.local else {}
        server = server_info(self.launched, state.get("pid"), str(conn.local.log_path) if conn.local else None)
        auth = " (token in " + conn.token_file + ")" if conn.token_file else ""
        summary = (
            f"deployed {name} v{version} ({self.served.file}) to TorchServe: POST {predictions_url}{auth}\n"
            f"smoke test passed in {smoke['seconds']:.2f} s "
            f"(max abs error {max((f['max_abs_error'] for f in smoke['outputs']), default=0.0):.3g}); "
            f"{workers} worker(s), batch size {batch_size}"
            + (f"; v{previous} stays registered" if previous and previous != version else "")
            + (f"; the registered v{version} was replaced (its files changed since)" if self.rollout else "")
            + f"\nv2 request (the build's sample): {v2_curl}"
        )
        return deploy_result(
            "torchserve",
            self.report,
            self.served,
            url=url,
            infer_url=model_url,
            v2_curl=v2_curl,
            smoke_test=smoke,
            timings=self.timings,
            server=server,
            summary=summary,
            management_url=conn.management.base_url,
            predictions_url=predictions_url,
            token_file=conn.token_file,
            handler=choose_handler(self.report),
            metrics_url=f"{state['metrics_url']}/metrics" if state.get("metrics_url") else None,
            already_registered=self.already,
            rolled_out=self.rollout is not None,
            default_version=version,
            previous_default=previous,
            batch_size=batch_size,
            max_batch_delay_ms=info.get("maxBatchDelay", s.max_batch_delay_ms),
            workers=workers,
        )


def _describe_one(conn: Connection, name: str, version: str) -> dict[str, Any]:
    try:
        found = conn.management.describe(name, version)
        return found[0] if found else {}
    except HttpError:
        return {}


def deploy(build_dir: Path, report: BuildReport, opts: DeployOptions) -> dict[str, Any]:
    return run(TorchServeSteps(build_dir, report, opts))
