"""TorchServe configuration files, written from data structures: model-config.yaml (inside the .mar) and
config.properties (server side). No string templates: YAML through yaml.safe_dump, the `models` value through json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from ...report.build_report import BuildReport

# Defaults when neither the command line nor the build says otherwise.
DEFAULT_BATCH_SIZE = 4
DEFAULT_MAX_BATCH_DELAY_MS = 20
DEFAULT_WORKERS = 1
DEFAULT_RESPONSE_TIMEOUT_S = 120
# Large enough for raw-tensor JSON of detector outputs (TorchServe's default is 6.5 MB).
MAX_MESSAGE_BYTES = 128 * 1024 * 1024
DEFAULT_PORTS = {"inference": 8080, "management": 8081, "metrics": 8082, "grpc_inference": 7070, "grpc_management": 7071}


@dataclass(frozen=True)
class ServingSettings:
    """What model-config.yaml and registration carry: batching, workers, timeouts, the served format."""

    format: str = "onnx"
    batch_size: int = DEFAULT_BATCH_SIZE
    max_batch_delay_ms: int = DEFAULT_MAX_BATCH_DELAY_MS
    min_workers: int = DEFAULT_WORKERS
    max_workers: int = DEFAULT_WORKERS
    response_timeout_s: int = DEFAULT_RESPONSE_TIMEOUT_S
    threads: int = 0  # onnxruntime intra-op / torch threads per worker (0: the library's default)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings_from(
    report: BuildReport,
    fmt: str | None = None,
    batch_size: int | None = None,
    max_batch_delay_ms: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
) -> ServingSettings:
    """Settings for a build (packager/serve/settings.py's one rule): each option when given, else what the build's
    report recorded, else the defaults."""
    from ...errors import UsageError
    from ...report.formats import served
    from ...serve.settings import resolve

    recorded = report.target("torchserve").get("settings") or {}
    batchable = report.inputs_batchable
    fmt = served(report, fmt or recorded.get("format")).format
    given = {"batch_size": batch_size, "max_batch_delay_ms": max_batch_delay_ms, "workers": workers, "threads": threads}
    mine = {**recorded, "workers": recorded.get("min_workers")}  # the archive records minWorkers = maxWorkers
    defaults = {
        "batch_size": DEFAULT_BATCH_SIZE if batchable else 1,
        "max_batch_delay_ms": DEFAULT_MAX_BATCH_DELAY_MS,
        "workers": DEFAULT_WORKERS,
        "threads": 0,
    }
    values = resolve(given, {k: mine.get(k) for k in defaults}, defaults)
    size = int(values["batch_size"])
    if size < 1:  # TorchServe batches at least one request; 0 (Triton's "no batching") is 1 here
        raise UsageError(f"--batch-size {size} is out of range", "use a value of at least 1")
    if size > 1 and not batchable:
        raise UsageError(f"--batch-size {size}: the model's inputs have no dynamic batch axis", "use --batch-size 1")
    return ServingSettings(
        format=fmt,
        batch_size=size,
        max_batch_delay_ms=int(values["max_batch_delay_ms"]),
        min_workers=int(values["workers"]),
        max_workers=int(values["workers"]),
        response_timeout_s=int(recorded.get("response_timeout_s", DEFAULT_RESPONSE_TIMEOUT_S)),
        threads=int(values["threads"]),
    )


def model_config(settings: ServingSettings, handler: dict[str, Any]) -> dict[str, Any]:
    """model-config.yaml as a dict (TorchServe's key names)."""
    return {
        "minWorkers": settings.min_workers,
        "maxWorkers": settings.max_workers,
        "batchSize": settings.batch_size,
        "maxBatchDelay": settings.max_batch_delay_ms,
        "responseTimeout": settings.response_timeout_s,
        "handler": {"format": settings.format, **({"threads": settings.threads} if settings.threads else {}), **handler},
    }


def model_config_yaml(config: dict[str, Any]) -> str:
    return "# TorchServe model configuration, written by pack\n" + yaml.safe_dump(
        config, sort_keys=False, default_flow_style=False
    )


def models_entry(name: str, version: str, mar_name: str, settings: ServingSettings, default: bool = True) -> dict[str, Any]:
    return {
        name: {
            str(version): {
                "defaultVersion": default,
                "marName": mar_name,
                "minWorkers": settings.min_workers,
                "maxWorkers": settings.max_workers,
                "batchSize": settings.batch_size,
                "maxBatchDelay": settings.max_batch_delay_ms,
                "responseTimeout": settings.response_timeout_s,
            }
        }
    }


def _escape(value: str) -> str:
    """A java.util.Properties value: backslashes and line breaks escaped, leading blanks kept."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "\\" + out if out[:1] in (" ", "\t") else out


def config_properties(
    model_store: str,
    host: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
    load_models: list[str] | None = None,
    models: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    comment: str = "",
) -> str:
    """config.properties text. Token authorization stays on (TorchServe's default); the model API is enabled."""
    p = {**DEFAULT_PORTS, **(ports or {})}
    props: dict[str, Any] = {
        "inference_address": f"http://{host}:{p['inference']}",
        "management_address": f"http://{host}:{p['management']}",
        "metrics_address": f"http://{host}:{p['metrics']}",
        "grpc_inference_address": host,
        "grpc_management_address": host,
        "grpc_inference_port": p["grpc_inference"],
        "grpc_management_port": p["grpc_management"],
        "model_store": model_store,
        "load_models": ",".join(load_models) if load_models else "",
        "models": json.dumps(models or {}, sort_keys=True, separators=(",", ":")),
        "metrics_mode": "prometheus",
        "enable_model_api": "true",
        "default_workers_per_model": DEFAULT_WORKERS,
        "max_request_size": MAX_MESSAGE_BYTES,
        "max_response_size": MAX_MESSAGE_BYTES,
        **(extra or {}),
    }
    if not props["load_models"]:
        del props["load_models"]
    if props["models"] == "{}":
        del props["models"]
    lines = [f"# {line}" for line in comment.splitlines()] if comment else []
    lines.append(
        "# Token authorization is on (TorchServe's default): clients send `Authorization: Bearer <key>` from key_file.json."
    )
    lines += [f"{key}={_escape(str(value))}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def parse_properties(text: str) -> dict[str, str]:
    """Read back a config.properties written by `config_properties` (one key=value per line)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.replace("\\\\", "\\")
    return out
