"""deploy / status / undeploy on a Triton server: the local one pack launches, or --url.

Deploy: generate the repository entries from the build, check them offline, copy them into the server's repository
(keeping a backup of what was there), load them through the repository API, wait until ready, smoke-test with the
build's sample input against the recorded eager output. On any failure the previous entries are put back and
reloaded (or the new ones unloaded), so what served before keeps serving; exit 4.
With --url the entries are sent with the load request itself (config and files as load parameters); Triton's own
repository is untouched, so a rollback reloads the model from it, or unloads a model that was not there.
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ...errors import DeployFailed, EnvironmentProblem, UsageError
from . import config as cfg
from . import server
from .check import check_repository, raise_on_errors
from .client import TritonAPIError, TritonError, TritonHTTP, TritonUnreachable
from .repository import (
    NATIVE_FORMAT,
    RepoOptions,
    RepositoryLock,
    drop_backups,
    generate,
    install,
    io_names,
    is_detection,
    model_names,
    restore,
    serving_model,
    triton_version,
)

Log = Callable[[str], None]


def repo_options(opts: Any, default_backend: str = "python", report: dict[str, Any] | None = None) -> RepoOptions:
    from ...export import served_format

    backend = opts.backend or default_backend
    native = NATIVE_FORMAT.get(backend)
    if native and opts.format and opts.format != native:
        raise UsageError(f"--backend {backend} serves the {native} export, not {opts.format}", "use --backend python to serve any export")
    fmt = native or (served_format(report, opts.format) if report is not None else opts.format or "onnx")
    delay = opts.max_batch_delay_ms
    return RepoOptions(
        backend=backend,
        fmt=fmt,
        instances=int(opts.extra.get("instances") or opts.workers or 1),
        max_batch=opts.extra.get("max_batch") if opts.extra.get("max_batch") is not None else opts.batch_size,
        max_queue_delay_us=1000 if delay is None else int(delay) * 1000,
    )


def _missing_backend(exc: TritonAPIError, backend: str, have: list[str] | None) -> EnvironmentProblem:
    listing = f"it has: {', '.join(have)}" if have else "it does not say which it has"
    return EnvironmentProblem(
        f"this tritonserver has no {backend} backend ({listing}; Triton said: {exc.message[:160]})",
        "deploy with --backend python (runs the export inside Triton's python backend), or use a Triton build with that backend",
    )


# --- smoke test ------------------------------------------------------------------------------------------------


def _infer_client(url: str, timeout: float) -> Any:
    try:
        import tritonclient.http as httpclient
    except ImportError as exc:
        raise EnvironmentProblem(f"tritonclient[http] is not installed ({exc})", "pip install 'pack-models[triton]'") from None
    host = TritonHTTP(url).hostport
    return httpclient, httpclient.InferenceServerClient(host, connection_timeout=timeout, network_timeout=timeout)


def smoke_test(url: str, build_dir: Path, report: dict[str, Any], backend: str, model: str, version: str, timeout: float, runs: int = 5) -> dict[str, Any]:
    """Send the build's sample input; compare with its recorded eager output through the gate's comparison
    (packager/samples.py)."""
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    from ...samples import load_sample, verdict

    sample = load_sample(build_dir, report)
    httpclient, client = _infer_client(url, timeout)
    in_names, out_names = io_names(report, backend)
    inputs = []
    for cname, arr in zip(in_names, sample.inputs):
        item = httpclient.InferInput(cname, list(arr.shape), np_to_triton_dtype(arr.dtype))
        item.set_data_from_numpy(arr)
        inputs.append(item)
    requested = [httpclient.InferRequestedOutput(n) for n in out_names]
    latencies = []
    try:
        for _ in range(max(runs, 1)):
            t0 = time.perf_counter()
            result = client.infer(model, inputs, model_version=version, outputs=requested)
            latencies.append((time.perf_counter() - t0) * 1000)
    except InferenceServerException as exc:
        return {"passed": False, "reason": f"inference failed: {exc.message() if callable(getattr(exc, 'message', None)) else exc}"}
    finally:
        client.close()
    missing = [n for n in out_names if result.as_numpy(n) is None]
    if missing:
        return {"passed": False, "model": model, "reason": f"the answer has no output {missing[0]!r}"}
    return {
        **verdict(sample.check_outputs([result.as_numpy(n) for n in out_names])),
        "model": model,
        "latency_ms": {"first": round(latencies[0], 2), "median": round(statistics.median(latencies[1:] or latencies), 2)},
    }


def sample_image(width: int = 640, height: int = 480) -> bytes:
    """A synthetic JPEG (shapes on a gradient) for the detection ensemble's smoke test."""
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // width), (y * 255 // height), ((x + y) * 127 // (width + height))], -1).astype(np.uint8)
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    draw.rectangle([width // 8, height // 6, width // 3, height // 2], fill=(220, 30, 30))
    draw.ellipse([width // 2, height // 3, width * 7 // 8, height * 5 // 6], fill=(30, 200, 60))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def detect(url: str, model: str, image: bytes, timeout: float, version: str | None = None) -> dict[str, np.ndarray]:
    """Send encoded image bytes to a detection ensemble; returns boxes, scores, classes (batch axis removed)."""
    from tritonclient.utils import InferenceServerException

    httpclient, client = _infer_client(url, timeout)
    data = np.frombuffer(image, dtype=np.uint8)[None]
    item = httpclient.InferInput("image", list(data.shape), "UINT8")
    item.set_data_from_numpy(data)
    try:
        result = client.infer(model, [item], model_version=version or "", outputs=[httpclient.InferRequestedOutput(n) for n in ("boxes", "scores", "classes")])
    except InferenceServerException as exc:
        raise DeployFailed(f"the {model} ensemble failed on an image: {exc}") from None
    finally:
        client.close()
    return {n: result.as_numpy(n)[0] for n in ("boxes", "scores", "classes")}


def ensemble_smoke(url: str, model: str, version: str, timeout: float) -> dict[str, Any]:
    width, height = 640, 480
    t0 = time.perf_counter()
    try:
        out = detect(url, model, sample_image(width, height), timeout, version)
    except DeployFailed as exc:
        return {"passed": False, "model": model, "reason": exc.message}
    ms = (time.perf_counter() - t0) * 1000
    boxes, scores, classes = out["boxes"], out["scores"], out["classes"]
    problems = []
    if boxes.ndim != 2 or boxes.shape[1:] != (4,) or scores.shape != (len(boxes),) or classes.shape != (len(boxes),):
        problems.append(f"shapes boxes {list(boxes.shape)}, scores {list(scores.shape)}, classes {list(classes.shape)}")
    elif len(boxes) and (not np.isfinite(boxes).all() or boxes[:, [0, 2]].max() > width + 1e-3 or boxes[:, [1, 3]].max() > height + 1e-3 or boxes.min() < -1e-3):
        problems.append("boxes outside the image")
    return {
        "passed": not problems,
        "model": model,
        "image": f"{width}x{height} JPEG",
        "detections": int(len(boxes)),
        "latency_ms": round(ms, 2),
        **({"reason": "; ".join(problems)} if problems else {}),
    }


# --- deploy ----------------------------------------------------------------------------------------------------


def _files_of(entry: Path) -> dict[str, bytes]:
    return {str(p.relative_to(entry)): p.read_bytes() for p in sorted(entry.rglob("*")) if p.is_file() and p.parts[-2:][0] != "warmup" and p.name != cfg.CONFIG_FILE}


def _load_all(client: TritonHTTP, names: list[str], version: str, timeout: float, backend: str, have: list[str] | None, staged: Path | None = None) -> None:
    for name in names:
        try:
            if staged is None:
                client.load(name, timeout=timeout)
            else:
                config = cfg.read(staged / name / cfg.CONFIG_FILE)
                config.ClearField("model_warmup")  # warmup files cannot travel with a load request
                client.load(name, config_json=cfg.to_json(config), files=_files_of(staged / name), timeout=timeout)
        except TritonAPIError as exc:
            if exc.missing_backend:
                raise _missing_backend(exc, backend, have) from None
            raise DeployFailed(f"Triton could not load {name}: {exc.message[:300]}", "see the server log") from None
        except TritonUnreachable as exc:
            raise DeployFailed(f"loading {name}: {exc}") from None
        if not client.model_ready(name, version):
            raise DeployFailed(f"{name} version {version} is not ready after loading", "see the server log")


def _rollback(client: TritonHTTP, names: list[str], was_ready: set[str], log: Log, timeout: float) -> list[str]:
    notes = []
    for name in reversed(names):
        if name not in was_ready:
            try:
                client.unload(name, timeout=timeout)
                notes.append(f"unloaded {name}")
            except TritonError:
                pass
    for name in names:
        if name in was_ready:
            try:
                client.load(name, timeout=timeout)
                notes.append(f"reloaded previous {name}")
            except TritonError as exc:
                notes.append(f"could not reload previous {name}: {exc}")
    if notes:
        log("rollback: " + "; ".join(notes))
    return notes


@contextmanager
def staged_entries(build_dir: Path, report: dict[str, Any], ropts: RepoOptions, parent: Path, log: Log) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Generate the build's entries into a fresh staging folder under `parent` and check them offline; yields
    (folder, description) and removes the folder afterwards, whatever happened."""
    parent.mkdir(parents=True, exist_ok=True)
    staged = parent / f".staging-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    try:
        section = generate(build_dir, report, ropts, staged)
        raise_on_errors(check_repository(staged), log)
        yield staged, section
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def deploy(build_dir: Path, report: dict[str, Any], opts: Any, log: Log) -> dict[str, Any]:
    ropts = repo_options(opts, report=report)
    version = triton_version(report)
    names = model_names(report)
    with staged_entries(build_dir, report, ropts, server.state_dir(Path(opts.store)), log) as (staged, section):
        log(f"repository entries for {report['name']} v{version} ({ropts.backend} backend) pass the offline check")
        return _deploy_checked(build_dir, report, opts, log, ropts, version, names, staged, section)


def _deploy_checked(build_dir: Path, report: dict[str, Any], opts: Any, log: Log, ropts: RepoOptions, version: str, names: list[str], staged: Path, section: dict[str, Any]) -> dict[str, Any]:
    store = Path(opts.store)
    timings: dict[str, float] = {}
    state = None
    launched = False
    if opts.url:
        client = TritonHTTP(opts.url, timeout=opts.timeout)
        if not client.ready():
            raise EnvironmentProblem(f"no ready Triton server at {opts.url}", "check --url (the HTTP endpoint, e.g. http://127.0.0.1:8000)")
        url = client.url
        have = None
    else:
        t0 = time.perf_counter()
        state, launched = server.ensure(store, opts.server_binary, opts.host, opts.timeout, log)
        if launched:
            timings["server_start_s"] = round(time.perf_counter() - t0, 3)
        client = TritonHTTP(state.url, timeout=opts.timeout)
        url = state.url
        have = state.backends
    try:
        before = client.states()
    except TritonError as exc:
        raise EnvironmentProblem(f"the Triton repository API does not answer: {exc}", "pack needs --model-control-mode=explicit") from None
    was_ready = {n for n in names if before.get(n, {}).get("state") == "READY"}
    serving = serving_model(report)
    backups: dict[str, Path | None] = {}
    lock = RepositoryLock(Path(state.repository)) if state else None
    if lock:
        lock.__enter__()
    try:
        if state:
            backups = install(staged, Path(state.repository), names, version, force=True, keep_backup=True)
        t0 = time.perf_counter()
        try:
            log(f"loading {', '.join(names)} on {url}")
            _load_all(client, names, version, opts.timeout, ropts.backend, have, staged=None if state else staged)
            timings["load_s"] = round(time.perf_counter() - t0, 3)
            log(f"loaded in {timings['load_s']:.2f} s; smoke test")
            smoke = smoke_test(url, build_dir, report, ropts.backend, report["name"], version, opts.timeout)
            if not smoke["passed"]:
                raise DeployFailed(f"smoke test failed on {report['name']} v{version}: {smoke.get('reason')}")
            if is_detection(report):
                ens = ensemble_smoke(url, serving, version, opts.timeout)
                smoke["ensemble"] = ens
                if not ens["passed"]:
                    raise DeployFailed(f"smoke test failed on {serving}: {ens.get('reason')}")
        except (DeployFailed, EnvironmentProblem, TritonError) as exc:
            if state:
                restore(Path(state.repository), backups)
                backups = {}
            notes = _rollback(client, names, was_ready, log, opts.timeout)
            kept = [n for n in names if n in was_ready]
            if isinstance(exc, TritonError):
                exc = DeployFailed(str(exc))
            suffix = f"; the previous {', '.join(kept)} keeps serving" if kept else "; nothing was left loaded"
            if any(n.startswith("could not") for n in notes):
                suffix = "; " + "; ".join(n for n in notes if n.startswith("could not"))
            raise type(exc)(exc.message.rstrip(".") + suffix, exc.hint) from None
        except KeyboardInterrupt:  # Ctrl-C: put the previous entries back; a server this command started is stopped
            if state:
                restore(Path(state.repository), backups)
                backups = {}
            if launched:
                server.stop(store, lambda m: None)
            else:
                _rollback(client, names, was_ready, lambda m: None, min(opts.timeout, 30))
            raise
        drop_backups(backups)
        backups = {}
        if state:
            fresh = server.ServerState.load(store) or state
            fresh.deployments[report["name"]] = {"version": version, "models": names, "backend": ropts.backend, "serving_model": serving}
            fresh.save(store)
    finally:
        if backups:
            drop_backups(backups)
        if lock:
            lock.__exit__(None, None, None)
    inference_url = f"{url}/v2/models/{serving}/versions/{version}/infer"
    latency = smoke.get("latency_ms", {}).get("median")
    summary = (
        f"deployed {report['name']} v{version} to Triton ({ropts.backend} backend) at {url}; "
        f"smoke test passed ({latency} ms median)"
        + (f"; ensemble {serving}: {smoke['ensemble']['detections']} detections" if "ensemble" in smoke else "")
        + f"\ninference: POST {inference_url}"
    )
    return {
        "target": "triton",
        "model": report["name"],
        "version": version,
        "serving_model": serving,
        "models": names,
        "backend": ropts.backend,
        "format": section["format"],
        "max_batch_size": section["max_batch_size"],
        "inference_url": inference_url,
        "url": url,
        "server": {"pid": state.pid, "launched": launched, "log": state.log, "repository": state.repository, "backends": state.backends} if state else {"url": url, "launched": False},
        "timings": timings,
        "smoke_test": smoke,
        "summary": summary,
    }


# --- status / undeploy -------------------------------------------------------------------------------------------


def _client_for(opts: Any) -> tuple[TritonHTTP | None, Any]:
    if opts.url:
        return TritonHTTP(opts.url, timeout=min(opts.timeout, 30)), None
    state = server.running(Path(opts.store))
    if state is None:
        return None, None
    return TritonHTTP(state.url, timeout=min(opts.timeout, 30)), state


def status(opts: Any, log: Log) -> dict[str, Any]:
    client, state = _client_for(opts)
    if client is None:
        return {"target": "triton", "running": False, "models": [], "summary": f"no Triton server launched by pack is running for store {opts.store}"}
    try:
        index = client.index()
        meta = client.metadata()
    except TritonError as exc:
        raise EnvironmentProblem(f"Triton at {client.url} does not answer: {exc}") from None
    models = [
        {"name": e.get("name"), "version": e.get("version"), "state": e.get("state", "UNKNOWN"), "reason": e.get("reason", "")}
        for e in sorted(index, key=lambda e: (e.get("name", ""), e.get("version", "")))
    ]
    lines = [f"Triton {meta.get('version', '?')} at {client.url}" + (f" (pid {state.pid}, backends: {', '.join(state.backends)})" if state else "")]
    for m in models:
        lines.append(f"  {m['name']:<28} v{m['version'] or '-':<4} {m['state']}" + (f"  {m['reason']}" if m["reason"] and m["state"] != "READY" else ""))
    if not models:
        lines.append("  (no models)")
    return {
        "target": "triton",
        "running": True,
        "url": client.url,
        "server_version": meta.get("version"),
        "pid": state.pid if state else None,
        "backends": state.backends if state else None,
        "models": models,
        "deployments": state.deployments if state else None,
        "summary": "\n".join(lines),
    }


def undeploy(name: str, version: str | None, opts: Any, log: Log) -> dict[str, Any]:
    client, state = _client_for(opts)
    if client is None:
        raise UsageError(f"no Triton server launched by pack is running for store {opts.store}", "nothing to undeploy (pass --url for another server)")
    try:
        states = client.states()
    except TritonError as exc:
        raise EnvironmentProblem(f"Triton at {client.url} does not answer: {exc}") from None
    recorded = (state.deployments.get(name) if state else None) or {}
    names = recorded.get("models") or [n for n in (f"{name}_preprocess", name, f"{name}_postprocess", f"{name}_ensemble") if n in states]
    loaded = [n for n in names if states.get(n, {}).get("state") == "READY"]
    if name not in states or states[name].get("state") != "READY":
        known = ", ".join(sorted(n for n, e in states.items() if e.get("state") == "READY")) or "none"
        raise UsageError(f"{name} is not loaded on {client.url} (loaded: {known})")
    if version is not None and str(states[name].get("version")) != str(version):
        raise UsageError(f"{name} version {version} is not the loaded one (loaded: version {states[name].get('version')})")
    unloaded = []
    for n in reversed(loaded):
        try:
            client.unload(n, timeout=opts.timeout)
        except TritonError as exc:
            raise DeployFailed(f"Triton could not unload {n}: {exc}") from None
        if not client.wait_unloaded(n, min(opts.timeout, 60)):
            raise DeployFailed(f"{n} is still loaded {min(opts.timeout, 60):.0f} s after the unload request", "see the server log")
        unloaded.append(n)
    if state:
        fresh = server.ServerState.load(Path(opts.store)) or state
        fresh.deployments.pop(name, None)
        fresh.save(Path(opts.store))
    log(f"unloaded {', '.join(unloaded)}")
    return {
        "target": "triton",
        "model": name,
        "version": str(states[name].get("version")),
        "unloaded": unloaded,
        "url": client.url,
        "summary": f"unloaded {', '.join(unloaded)} from {client.url}",
    }
