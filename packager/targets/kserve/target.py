"""The KServe target behind the one Target interface: its options (the flags of `pack deploy --target kserve`) and
its capability `pack check-manifest`. Its runtimes are the targets that lay out a KServe storage folder (the
`StorageLayout` capability), found in the registry: the storage inside comes from the runtime's own target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...report.build_report import BuildReport
from ..base import Target, capable, register_target
from ..capabilities import STORAGE_LAYOUT
from ..options import DeployOptions, cli_field


def runtimes() -> tuple[str, ...]:
    """The KServe runtimes: the targets with a KServe storage layout, in the registry's order (the first: the default)."""
    return tuple(capable(STORAGE_LAYOUT))


@dataclass
class KServeDeployOptions(DeployOptions):
    runtime: str | None = cli_field(
        None, "--runtime", "KServe: the serving runtime, named in the manifest (default: the first).", choices=runtimes
    )
    storage_uri: str | None = cli_field(
        None,
        "--storage-uri",
        "KServe: where the storage folder will be uploaded (s3://, gs://, pvc://), or oci://REGISTRY/REPO[:TAG]: "
        "pack builds a model-car image and pushes it there.",
    )
    deployment_mode: str | None = cli_field(
        None,
        "--deployment-mode",
        "KServe: Standard (Deployment + HPA, the default) or Knative (Serverless and RawDeployment: the older names).",
        choices=("Standard", "Knative", "Serverless", "RawDeployment"),
    )
    apply: bool = cli_field(False, "--apply", "KServe: run kubectl apply when kubectl and a context exist.", is_flag=True)
    protocol: str | None = cli_field(
        None, "--protocol", "KServe: inference protocol (torchserve v1|v2, triton v2).", choices=("v1", "v2")
    )
    cpu: str | None = cli_field(None, "--cpu", "KServe: CPU request and limit (default 1).")
    memory: str | None = cli_field(None, "--memory", "KServe: memory request and limit (default 2Gi).")
    gpus: int | None = cli_field(None, "--gpus", "KServe: nvidia.com/gpu per replica (default 0).", type=int)
    min_replicas: int | None = cli_field(None, "--min-replicas", "KServe: minimum replicas (default 1).", type=int)
    max_replicas: int | None = cli_field(None, "--max-replicas", "KServe: maximum replicas (default 3).", type=int)
    sign_key: str | None = cli_field(
        None,
        "--sign-key",
        "KServe: sign the storage folder (model.sig, OpenSSF Model Signing) with this EC private key (PEM); "
        "passphrase: PACK_SIGN_KEY_PASSWORD.",
    )
    scale_target: int | None = cli_field(
        None,
        "--scale-target",
        "KServe: autoscaling target: CPU % (Standard, default 80) or concurrent requests per replica (Knative, default 8).",
        type=int,
    )


@register_target
class KServeTarget(Target):
    name = "kserve"
    Options = KServeDeployOptions
    description = "KServe InferenceService manifest and storage folder (no cluster needed to write them)"

    def deploy(self, build_dir: Path, report: BuildReport, opts: Any) -> dict[str, Any]:
        from . import deploy

        return deploy(build_dir, report, opts, capable(STORAGE_LAYOUT))

    def check_manifest(self, path: Path) -> dict[str, Any]:
        """`pack check-manifest`: every document of a YAML file against the strict KServe CRD schema of its kind."""
        from .check import check_manifest

        return check_manifest(path)

    def status(self, opts: Any) -> dict[str, Any]:
        from ...errors import UsageError

        raise UsageError("pack does not track KServe deployments", "use kubectl get inferenceservices")
