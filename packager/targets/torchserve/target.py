"""The TorchServe target behind the one Target interface: options, build-time archive, deploy and friends, the
.mar's own checks and summary; and its capabilities: `pack archive`, `pack tune`, the bench's profile and the request
a client sends, and the storage layout of KServe's TorchServe runtime."""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...report.build_report import BuildReport
from ...report.formats import Served, served
from ...report.store import link_or_copy
from ..base import ServerTarget, register_target
from ..capabilities import BenchProfile, Endpoint, KServeRuntime, Request
from ..migration import Extracted, MigrationSource
from ..options import SERVER, ServerOptions, cli_field
from .marcheck import check_mar, inspect_mar
from .marcheck import checked as mar_checked

logger = logging.getLogger(__name__)

KSERVE_PORT = 8085  # TorchServe inside the predictor pod; KServe's wrapper serves 8080 in front of it
KSERVE_MOUNT = "/mnt/models"  # where KServe's storage initializer puts the storageUri contents


@dataclass
class TorchServeOptions(ServerOptions):
    token_file: str | None = cli_field(None, "--token-file", "TorchServe key_file.json for --url.", commands=SERVER)
    inference_url: str | None = cli_field(
        None,
        "--inference-url",
        "TorchServe's inference API for --url (e.g. https://host:8443); deploy needs it.",
        commands=SERVER,
    )
    insecure_http: bool = cli_field(
        False,
        "--insecure-http",
        "Send --token-file's keys over plain http to a host that is not loopback.",
        is_flag=True,
        commands=SERVER,
    )


def kserve_properties(report: BuildReport, mar_name: str, settings: Any, protocol: str) -> str:
    """config.properties for KServe's TorchServe runtime (0.0.0.0 inside the pod, KServe's model server in front)."""
    from .config import _escape, models_entry

    snapshot = {"name": "startup.cfg", "modelCount": 1, "models": models_entry(report.name, report.version, mar_name, settings)}
    props = {
        "inference_address": f"http://0.0.0.0:{KSERVE_PORT}",
        "management_address": f"http://0.0.0.0:{KSERVE_PORT}",
        "metrics_address": "http://0.0.0.0:8082",
        "grpc_inference_port": 7070,
        "grpc_management_port": 7071,
        "enable_metrics_api": "true",
        "metrics_mode": "prometheus",
        "enable_envvars_config": "true",
        "install_py_dep_per_model": "false",
        "service_envelope": "kservev2" if protocol == "v2" else "kserve",
        "model_store": f"{KSERVE_MOUNT}/model-store",
        "model_snapshot": json.dumps(snapshot, sort_keys=True, separators=(",", ":")),
        "disable_token_authorization": "true",
        "enable_model_api": "false",
    }
    lines = [
        f"# TorchServe configuration for KServe's TorchServe runtime: {report.name} v{report.version}, written by pack.",
        "# Inside the predictor pod TorchServe listens on 0.0.0.0 and KServe's model server in front of it is the only",
        "# client, so token authorization is off here and the model API is off; authentication belongs to the cluster's",
        "# ingress. (pack's local TorchServe keeps token auth on and binds 127.0.0.1.)",
    ]
    lines += [f"{key}={_escape(str(value))}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


@register_target
class TorchServeTarget(ServerTarget):
    name = "torchserve"
    Options = TorchServeOptions
    description = "TorchServe 0.12 (archived upstream; pinned, token auth on)"
    packaged_by_build = True
    artifact = "mar"
    bench = BenchProfile(
        runtime="TorchServe workers",
        work="the same handler code as the in-process rows, behind TorchServe's frontend",
        defaults={"workers": 1, "batch_size": 1, "max_batch_delay_ms": 0, "format": "onnx"},
        settings=("workers", "batch_size", "max_batch_delay_ms", "threads", "format"),
        load_timings=("register_s", "scale_s"),
        goal=0.8,
        same_runtime="inprocess-onnx",
    )
    kserve = KServeRuntime(
        model_format="pytorch",
        runtime="kserve-torchserve",
        protocols=("v1", "v2"),
        ready={"v1": "/v1/models/{model}", "v2": "/v2/models/{model}/ready"},
    )

    def archive(self, build_dir: Path, report: BuildReport, opts: Any) -> dict[str, Any]:
        from . import archive

        return archive(build_dir, report, opts)

    def tuning_space(self, report: BuildReport) -> tuple[dict[str, list[Any]], dict[str, Any]]:
        """`pack tune`: the settings it may change (deploy option names) with their candidates, and where to start."""
        from .tuning import tuning_space

        return tuning_space(report)

    def adopt_settings(self, build_dir: Path, report: BuildReport, settings: dict[str, Any], tuned: dict[str, Any]) -> list[str]:
        """`pack tune`: write `settings` into the build's artifacts (checked offline, atomic); the files written."""
        from .tuning import adopt

        return adopt(build_dir, report, settings, tuned)

    def owns(self, path: Path) -> bool:
        return path.is_file() and (path.suffix == ".mar" or zipfile.is_zipfile(path))

    def verify(self, path: Path) -> list[tuple[str, str]]:
        return check_mar(path)

    def checked(self, path: Path) -> str:
        return mar_checked(path)

    def inspect(self, path: Path) -> dict[str, Any]:
        return inspect_mar(path)

    def read_source(self, path: Path) -> MigrationSource | None:
        from .migration import read_source

        return read_source(path)

    def extract_source(self, source: MigrationSource, dest: Path) -> Extracted:
        from .migration import extract_source

        return extract_source(source, dest)

    def run_old(self, source: MigrationSource, found: Extracted, request: Request, model: Any = None) -> Any:
        from .migration import run_old

        return run_old(source, found, request, model)

    def ask_old(self, url: str, model: str, source: MigrationSource, request: Request, token: str | None) -> Any:
        from .migration import ask_old

        return ask_old(url, model, request, token)

    def endpoint(self, deployed: dict[str, Any], report: BuildReport, store: Path, request: Request) -> Endpoint:
        """What an end user sends to the deploy's `predictions_url` (the request's body: image bytes for image models,
        which the server decodes and pre-processes; tensor JSON otherwise), with the inference token from the
        server's key file."""
        import urllib.parse

        from .server import TorchServeServer, read_tokens

        body, content_type, payload = request.body, request.content_type, request.description
        token = read_tokens(Path(deployed["token_file"]))["inference"]
        return Endpoint(
            base_url=deployed["url"],
            path=urllib.parse.urlsplit(deployed["predictions_url"]).path,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
            body=body,
            payload=payload,
            compare_with="inprocess-eager",
            pids=TorchServeServer(store).processes,
        )

    def kserve_storage(
        self, build_dir: Path, report: BuildReport, dest: Path, protocol: str, fmt: str | None, gpus: int
    ) -> tuple[str, Served]:
        """`config/config.properties` and `model-store/<name>.mar`, as KServe's TorchServe runtime reads them."""
        from .config import settings_from
        from .mar import write_mar

        settings = settings_from(report, fmt)
        mar_name = f"{report.name}.mar"
        built = build_dir / "torchserve" / mar_name
        recorded = report.target("torchserve").get("settings")
        if built.is_file() and recorded == settings.to_dict():
            link_or_copy(built, dest / "model-store" / mar_name)
        else:
            logger.info(f"kserve: writing {mar_name} ({settings.format})")
            (dest / "model-store").mkdir(parents=True)
            write_mar(build_dir, report, settings, dest / "model-store" / mar_name)
        (dest / "config").mkdir(parents=True)
        (dest / "config" / "config.properties").write_text(kserve_properties(report, mar_name, settings, protocol))
        return str(report.name), served(report, settings.format)
