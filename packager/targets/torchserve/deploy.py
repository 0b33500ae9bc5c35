"""`pack deploy/status/undeploy/stop --target torchserve`: register through the management API, smoke-test, roll back.

A deploy registers the new version beside any version already serving, sets its workers, sends the build's sample
input through the inference API and compares the answer with the recorded eager output within the build's tolerances.
Only then does the new version become the default; when anything fails, the new version is unregistered again and the
previous default keeps serving (exit 4).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import ipaddress
import json
import os
import shutil
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ...errors import DeployFailed, EnvironmentProblem, UsageError
from .. import DeployOptions
from .client import ApiError, InferenceClient, ManagementClient, Unreachable
from .config import ServingSettings, settings_from
from .mar import choose_handler, read_manifest, write_mar
from .server import LocalServer, read_tokens

Log = Callable[[str], None]
MODEL_STORE_ENV = "PACK_TORCHSERVE_MODEL_STORE"  # with --url: a folder that is the server's model store
INFERENCE_URL_ENV = "PACK_TORCHSERVE_INFERENCE_URL"  # with --url: the inference API (default: management port - 1)


@dataclass
class Connection:
    management: ManagementClient
    inference: InferenceClient
    token_file: str | None
    local: LocalServer | None
    model_store: Path | None
    server_seconds: float = 0.0
    launched: bool = False  # this command started the server
    registering: bool = False  # a registration request was sent


# ---------------------------------------------------------------- connecting


def _inference_url(management_url: str, opts: DeployOptions) -> str:
    given = (opts.extra or {}).get("inference_url") or os.environ.get(INFERENCE_URL_ENV)
    if given:
        return given.rstrip("/")
    state = LocalServer(opts.store).running()  # the server pack launched for this store, reached through --url
    if state and state["management_url"].rstrip("/") == management_url.rstrip("/"):
        return state["inference_url"]
    parts = urllib.parse.urlsplit(management_url)
    port = parts.port or 8081
    host = parts.hostname or "127.0.0.1"
    return f"{parts.scheme or 'http'}://{host}:{port - 1}"


def connect(opts: DeployOptions, log: Log, start: bool) -> Connection | None:
    """The server to talk to: --url, else the server launched for this store (started when `start`)."""
    if opts.url:
        url = opts.url.rstrip("/")
        if not urllib.parse.urlsplit(url).scheme:
            url = "http://" + url
        tokens = read_tokens(Path(opts.token_file)) if opts.token_file else {}
        store = os.environ.get(MODEL_STORE_ENV)
        conn = Connection(
            ManagementClient(url, tokens.get("management"), timeout=opts.timeout),
            InferenceClient(_inference_url(url, opts), tokens.get("inference"), timeout=opts.timeout),
            str(Path(opts.token_file).resolve()) if opts.token_file else None,
            None,
            Path(store) if store else None,
        )
        _check_reachable(conn)
        return conn
    local = LocalServer(opts.store)
    state = local.running()
    if state is None and not start:
        return None
    t0 = time.monotonic()
    launched = state is None
    if state is None:
        try:
            state = local.start(opts.timeout, log)
        except KeyboardInterrupt:  # Ctrl-C while it starts: leave no server behind
            local.stop(lambda m: None)
            raise
    tokens = local.tokens()
    conn = Connection(
        ManagementClient(state["management_url"], tokens["management"], timeout=opts.timeout),
        InferenceClient(state["inference_url"], tokens["inference"], timeout=opts.timeout),
        str(local.key_file),
        local,
        local.model_store,
        round(time.monotonic() - t0, 2),
        launched,
    )
    _check_reachable(conn)
    return conn


def _check_reachable(conn: Connection) -> None:
    try:
        conn.management.list_models()
    except Unreachable as exc:
        raise EnvironmentProblem(f"cannot reach TorchServe's management API ({exc})", "check --url, or start the server") from None
    except ApiError as exc:
        lowered = exc.message.lower()
        if exc.status in (400, 401, 403) and ("token" in lowered or "key" in lowered):
            raise EnvironmentProblem(
                f"TorchServe at {conn.management.base_url} refused pack's token ({exc.message})",
                "pass the server's key_file.json with --token-file" if not conn.token_file else "the key file is stale: pass the current key_file.json",
            ) from None
        raise EnvironmentProblem(f"TorchServe's management API answered HTTP {exc.status}: {exc.message}") from None


# ---------------------------------------------------------------- the archive


def mar_file(build_dir: Path, report: dict[str, Any]) -> Path:
    return build_dir / "torchserve" / f"{report['name']}.mar"


def _usable_build_mar(build_dir: Path, report: dict[str, Any], settings: ServingSettings) -> Path | None:
    """The build's own .mar when it serves the requested format; refuse one that does not match report.json."""
    path = mar_file(build_dir, report)
    if not path.is_file():
        return None
    from ...loader import sha256_file

    rel = str(path.relative_to(build_dir))
    recorded = (report.get("sha256") or {}).get(rel)
    if recorded and sha256_file(path) != recorded:
        raise UsageError(f"{path} does not match the sha256 recorded in report.json", f"rewrite it with `pack archive {report['name']} --version {report['version']} --force`")
    found = read_manifest(path)
    if not found:
        raise UsageError(f"{path} is not a readable TorchServe archive", "rewrite it with `pack archive --force`")
    from .mar import SERIALIZED

    return path if found["model"].get("serializedFile") == SERIALIZED[settings.format] else None


def _stage_mar(build_dir: Path, report: dict[str, Any], settings: ServingSettings, folder: Path, file_name: str, log: Log) -> Path:
    """Put the archive at folder/file_name: a hard link to (or copy of) the build's .mar, or a fresh one."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / file_name
    tmp = folder / f".{file_name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    source = _usable_build_mar(build_dir, report, settings)
    try:
        if source is not None:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
        else:
            log(f"writing a {settings.format} archive for {report['name']} v{report['version']}")
            write_mar(build_dir, report, settings, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


@contextlib.contextmanager
def _serve_file(path: Path, host: str) -> Iterator[str]:
    """Serve one file over HTTP on a loopback port while a remote TorchServe on this host downloads it."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.split("?")[0] != "/" + path.name:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            with open(path, "rb") as fh:
                shutil.copyfileobj(fh, self.wfile, 1 << 20)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/{path.name}"
    finally:
        server.shutdown()
        server.server_close()


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------- registration


def _versions(conn: Connection, name: str) -> list[dict[str, Any]]:
    try:
        return conn.management.describe(name)
    except ApiError as exc:
        if exc.status == 404:
            return []
        raise


def _default_version(conn: Connection, described: list[dict[str, Any]]) -> str | None:
    return conn.management.default_version(described[0]["modelName"]) if described else None


def _unregister_quietly(conn: Connection, name: str, version: str, log: Log) -> None:
    try:
        conn.management.unregister(name, version)
        log(f"unregistered {name} v{version}")
    except (ApiError, Unreachable):
        pass


def smoke_test(conn: Connection, build_dir: Path, report: dict[str, Any], version: str, timeout: float) -> dict[str, Any]:
    """Send the build's sample input as generic tensor JSON and compare with the recorded eager output (the gate's
    comparison, packager/samples.py)."""
    from ...samples import load_sample, verdict

    sample = load_sample(build_dir, report)
    inputs = [
        {"name": spec["name"], "shape": list(arr.shape), "dtype": str(arr.dtype), "encoding": "base64",
         "data": base64.b64encode(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).decode()}
        for spec, arr in zip(report["inputs"], sample.inputs)
    ]
    body = json.dumps({"inputs": inputs, "output_encoding": "base64"}).encode()
    t0 = time.monotonic()
    try:
        status, data = conn.inference.predict(report["name"], body, "application/json", version=version, timeout=timeout)
    except ApiError as exc:
        return {"passed": False, "reason": f"the sample request failed with HTTP {exc.status}: {exc.message}", "seconds": round(time.monotonic() - t0, 3)}
    except Unreachable as exc:
        return {"passed": False, "reason": f"no answer to the sample request ({exc})", "seconds": round(time.monotonic() - t0, 3)}
    seconds = round(time.monotonic() - t0, 3)
    try:
        outputs = json.loads(data)["outputs"]
    except (ValueError, KeyError, TypeError):
        return {"passed": False, "reason": f"the answer is not tensor JSON: {data[:200]!r}", "seconds": seconds}
    arrays = []
    for spec, got in zip(report["outputs"], outputs):
        try:
            dtype = np.dtype(got["dtype"])
            if got.get("encoding") == "base64":
                arrays.append(np.frombuffer(base64.b64decode(got["data"]), dtype=dtype.newbyteorder("<")).reshape(got["shape"]))
            else:
                arrays.append(np.asarray(got["data"], dtype=dtype).reshape(got["shape"]))
        except (KeyError, TypeError, ValueError) as exc:
            return {"passed": False, "reason": f"output {spec['name']!r} does not decode: {exc}", "seconds": seconds}
    return {**verdict(sample.check_outputs(arrays)), "seconds": seconds, "batch": sample.case.batch}


def deploy(build_dir: Path, report: dict[str, Any], opts: DeployOptions, log: Log) -> dict[str, Any]:
    name, version = report["name"], str(report["version"])
    settings = settings_from(report, opts.format, opts.batch_size, opts.max_batch_delay_ms, opts.workers)
    conn = connect(opts, log, start=True)
    assert conn is not None
    was_registered = any(str(d.get("modelVersion")) == version for d in _versions(conn, name))
    try:
        return _deploy(conn, build_dir, report, settings, opts, log)
    except KeyboardInterrupt:
        # Ctrl-C: a server this command started is stopped; on a server that ran before, the new version is removed
        if conn.launched and conn.local is not None:
            conn.local.stop(lambda m: None)
        elif not was_registered:
            _remove_interrupted(conn, name, version, opts.timeout)
        raise


def _remove_interrupted(conn: Connection, name: str, version: str, timeout: float) -> None:
    """Undo a registration that Ctrl-C cut short: the server may still be registering it, so wait a little."""
    if conn.model_store is not None:
        (conn.model_store / f"{name}.v{version}.mar").unlink(missing_ok=True)
    deadline = time.monotonic() + (min(timeout, 30.0) if conn.registering else 0.0)
    while True:
        try:
            registered = any(str(d.get("modelVersion")) == version for d in _versions(conn, name))
            if registered:
                conn.management.unregister(name, version)
                return
        except (ApiError, Unreachable):
            pass
        if time.monotonic() > deadline:
            return
        time.sleep(0.5)


def _deploy(conn: Connection, build_dir: Path, report: dict[str, Any], settings: ServingSettings, opts: DeployOptions, log: Log) -> dict[str, Any]:
    name, version = report["name"], str(report["version"])
    described = _versions(conn, name)
    previous_default = _default_version(conn, described)
    already = any(str(d.get("modelVersion")) == version for d in described)
    file_name = f"{name}.v{version}.mar"
    timings: dict[str, float] = {"server_start_s": conn.server_seconds}
    staged: Path | None = None
    if already:
        log(f"{name} v{version} is already registered; checking it again")
    else:
        t0 = time.monotonic()
        try:
            if conn.model_store is not None:
                staged = _stage_mar(build_dir, report, settings, conn.model_store, file_name, log)
                _register(conn, name, version, file_name, settings, opts, log)
            else:
                if not _is_loopback(conn.management.base_url):
                    raise UsageError(
                        f"cannot hand the archive to the remote TorchServe at {conn.management.base_url}",
                        f"set {MODEL_STORE_ENV} to a folder that is its model store (shared), or deploy on its host",
                    )
                with _tempdir(build_dir) as folder:
                    local_copy = _stage_mar(build_dir, report, settings, folder, f"{name}.v{version}.{os.getpid()}.mar", log)
                    with _serve_file(local_copy, "127.0.0.1") as url:
                        _register(conn, name, version, url, settings, opts, log)
        except DeployFailed:
            if staged is not None:
                staged.unlink(missing_ok=True)
            raise
        timings["register_s"] = round(time.monotonic() - t0, 2)
    try:
        t0 = time.monotonic()
        conn.management.scale(name, version, settings.min_workers, opts.timeout)
        timings["scale_s"] = round(time.monotonic() - t0, 2)
    except (ApiError, Unreachable) as exc:
        _rollback(conn, name, version, already, staged, log)
        raise DeployFailed(f"setting {settings.min_workers} worker(s) for {name} v{version} failed: {exc}", _where_logs(conn)) from None
    log(f"smoke test: sample input -> /predictions/{name}/{version}")
    smoke = smoke_test(conn, build_dir, report, version, opts.timeout)
    timings["smoke_s"] = smoke["seconds"]
    if not smoke["passed"]:
        _rollback(conn, name, version, already, staged, log)
        serving = f"; v{previous_default} is still the default" if previous_default and previous_default != version else ""
        raise DeployFailed(f"smoke test of {name} v{version} failed: {smoke['reason']}; it was unregistered{serving}", _where_logs(conn))
    try:
        conn.management.set_default(name, version)
    except ApiError as exc:
        raise DeployFailed(f"{name} v{version} passed its smoke test but could not become the default: {exc.message}") from None
    info = _describe_one(conn, name, version)
    result = {
        "target": "torchserve",
        "model": name,
        "version": version,
        "format": settings.format,
        "handler": choose_handler(report),
        "inference_url": conn.inference.base_url,
        "management_url": conn.management.base_url,
        "predictions_url": f"{conn.inference.base_url}/predictions/{name}",
        "token_file": conn.token_file,
        "launched_server": conn.local is not None,
        "logs": str(conn.local.logs) if conn.local else None,
        "already_registered": already,
        "default_version": version,
        "previous_default": previous_default,
        "batch_size": info.get("batchSize", settings.batch_size),
        "max_batch_delay_ms": info.get("maxBatchDelay", settings.max_batch_delay_ms),
        "workers": len(info.get("workers", [])),
        "smoke_test": smoke,
        "timings": timings,
    }
    auth = " (token in " + conn.token_file + ")" if conn.token_file else ""
    result["summary"] = (
        f"deployed {name} v{version} ({settings.format}) to TorchServe: POST {result['predictions_url']}{auth}\n"
        f"smoke test passed in {smoke['seconds']:.2f} s (max abs error {max((f['max_abs_error'] for f in smoke['outputs']), default=0.0):.3g}); "
        f"{result['workers']} worker(s), batch size {result['batch_size']}"
        + (f"; v{previous_default} stays registered" if previous_default and previous_default != version else "")
    )
    return result


@contextlib.contextmanager
def _tempdir(build_dir: Path) -> Iterator[Path]:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="pack-mar-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _register(conn: Connection, name: str, version: str, url: str, settings: ServingSettings, opts: DeployOptions, log: Log) -> None:
    log(f"registering {name} v{version} (batch size {settings.batch_size}, {settings.min_workers} worker(s))")
    conn.registering = True
    try:
        conn.management.register(url, name, settings.batch_size, settings.max_batch_delay_ms, settings.min_workers, settings.response_timeout_s, opts.timeout)
    except ApiError as exc:
        if exc.status != 409:  # 409: this very version was there already; nothing of ours to remove
            _unregister_quietly(conn, name, version, log)
        raise DeployFailed(f"TorchServe refused to register {name} v{version}: HTTP {exc.status} {exc.message}", _where_logs(conn)) from None
    except Unreachable as exc:
        if conn.local is not None and conn.local.running() is None:
            raise DeployFailed(f"TorchServe stopped while registering {name} v{version} ({exc})", f"{_where_logs(conn)}; `pack deploy` starts a new one") from None
        _unregister_quietly(conn, name, version, log)
        raise DeployFailed(f"registering {name} v{version} got no answer within {opts.timeout:.0f} s ({exc})", "raise --timeout; " + _where_logs(conn)) from None


def _rollback(conn: Connection, name: str, version: str, already: bool, staged: Path | None, log: Log) -> None:
    if already:
        return  # it was serving before this command: leave it as it was
    _unregister_quietly(conn, name, version, log)
    if staged is not None:
        staged.unlink(missing_ok=True)


def _where_logs(conn: Connection) -> str:
    return f"see the server log {conn.local.log_path()}" if conn.local else "see the server's logs"


def _describe_one(conn: Connection, name: str, version: str) -> dict[str, Any]:
    try:
        found = conn.management.describe(name, version)
        return found[0] if found else {}
    except (ApiError, Unreachable):
        return {}


# ---------------------------------------------------------------- status, undeploy, stop


def status(opts: DeployOptions, log: Log) -> dict[str, Any]:
    conn = connect(opts, log, start=False)
    if conn is None:
        return {
            "target": "torchserve",
            "running": False,
            "models": [],
            "summary": f"no TorchServe launched by pack for store {opts.store} (`pack deploy MODEL` starts one)",
        }
    models = []
    for entry in conn.management.list_models():
        described = _versions(conn, entry["modelName"])
        default = _default_version(conn, described)
        for d in described:
            workers = d.get("workers") or []
            models.append(
                {
                    "model": d.get("modelName"),
                    "version": str(d.get("modelVersion")),
                    "default": str(d.get("modelVersion")) == default,
                    "mar": d.get("modelUrl"),
                    "batch_size": d.get("batchSize"),
                    "max_batch_delay_ms": d.get("maxBatchDelay"),
                    "min_workers": d.get("minWorkers"),
                    "max_workers": d.get("maxWorkers"),
                    "workers": [{"id": w.get("id"), "status": w.get("status"), "pid": w.get("pid"), "memory_bytes": w.get("memoryUsage")} for w in workers],
                }
            )
    result = {
        "target": "torchserve",
        "running": True,
        "inference_url": conn.inference.base_url,
        "management_url": conn.management.base_url,
        "token_file": conn.token_file,
        "pid": (conn.local.state() or {}).get("pid") if conn.local else None,
        "models": models,
    }
    from ...console import table

    rows = [[m["model"], m["version"], "yes" if m["default"] else "", str(m["batch_size"]), f"{sum(w['status'] == 'READY' for w in m['workers'])}/{len(m['workers'])}"] for m in models]
    head = f"TorchServe at {conn.inference.base_url} (management {conn.management.base_url})"
    result["summary"] = head + "\n" + (table(rows, ["model", "version", "default", "batch", "ready workers"]) if rows else "no models registered")
    return result


def undeploy(name: str, version: str | None, opts: DeployOptions, log: Log) -> dict[str, Any]:
    conn = connect(opts, log, start=False)
    if conn is None:
        raise UsageError(f"no TorchServe launched by pack for store {opts.store}", "nothing to undeploy (or pass --url)")
    described = _versions(conn, name)
    if not described:
        raise UsageError(f"{name!r} is not registered on TorchServe at {conn.management.base_url}")
    known = [str(d.get("modelVersion")) for d in described]
    if version is not None and str(version) not in known:
        raise UsageError(f"{name!r} has no version {version} registered (registered: {', '.join(known)})")
    default = _default_version(conn, described)
    targets = [str(version)] if version is not None else sorted(known, key=lambda v: v == default)  # the default last
    removed = []
    for v in targets:
        try:
            conn.management.unregister(name, v, timeout=opts.timeout)
        except ApiError as exc:
            hint = "undeploy the other versions first, or deploy another version to make it the default" if v == default else None
            raise DeployFailed(f"TorchServe refused to unregister {name} v{v}: HTTP {exc.status} {exc.message}", hint) from None
        removed.append(v)
        log(f"unregistered {name} v{v}")
        if conn.model_store is not None:
            (conn.model_store / f"{name}.v{v}.mar").unlink(missing_ok=True)
    remaining = [v for v in known if v not in removed]
    return {
        "target": "torchserve",
        "model": name,
        "removed": removed,
        "remaining": remaining,
        "summary": f"unregistered {name} version(s) {', '.join(removed)}" + (f"; still registered: {', '.join(remaining)}" if remaining else ""),
    }


def stop(opts: DeployOptions, log: Log) -> dict[str, Any]:
    local = LocalServer(opts.store)
    result = local.stop(log)
    result["target"] = "torchserve"
    result["summary"] = (
        f"stopped the TorchServe of store {opts.store}" if result["stopped"] else f"no TorchServe launched by pack is running for store {opts.store}"
    )
    return result
