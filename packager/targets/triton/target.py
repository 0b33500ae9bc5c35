"""The Triton target behind the one Target interface: options, build-time repository entries, deploy and friends, a
repository's checks and summary; and its capabilities: `pack repo` and `check-repo`, `pack tune`, the bench's profile
and the v2 request a client sends, and the repository KServe's Triton runtime serves."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...report.build_report import BuildReport
from ...report.formats import Served, served
from ..base import ServerTarget, register_target
from ..capabilities import BenchProfile, Endpoint, KServeRuntime, Request
from ..migration import Extracted, MigrationSource
from ..options import SERVER, ServerOptions, cli_field

if TYPE_CHECKING:
    import numpy as np

BACKEND_CHOICES = ("auto", "onnxruntime", "pytorch", "torch_aoti", "python")


@dataclass
class TritonOptions(ServerOptions):
    server_binary: str | None = cli_field(None, "--tritonserver", "tritonserver binary to launch.", commands=SERVER)
    backend: str | None = cli_field(
        None,
        "--backend",
        "Triton backend (default auto: the native backend of the served export where the server has it, else "
        "python; at --url the native one is tried first).",
        choices=BACKEND_CHOICES,
    )


def v2_binary_body(names: list[str], arrays: list[np.ndarray], outputs: list[str]) -> tuple[bytes, int]:
    """A v2 infer request with the tensors in Triton's binary-data extension: (body, JSON header length)."""
    from tritonclient.utils import np_to_triton_dtype

    header = {
        "inputs": [
            {
                "name": n,
                "shape": list(a.shape),
                "datatype": np_to_triton_dtype(a.dtype),
                "parameters": {"binary_data_size": a.nbytes},
            }
            for n, a in zip(names, arrays, strict=True)
        ],
        "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    import numpy as np

    return head + b"".join(np.ascontiguousarray(a).tobytes() for a in arrays), len(head)


def inspect_repository(repo: Path) -> dict[str, Any]:
    from . import config as cfg

    models = []
    for entry in sorted(p for p in repo.iterdir() if (p / cfg.CONFIG_FILE).is_file()):
        config = cfg.read(entry / cfg.CONFIG_FILE)
        models.append(
            {
                "name": entry.name,
                "kind": cfg.kind_of(config),
                "max_batch_size": config.max_batch_size,
                "inputs": [{"name": t.name, "dtype": cfg.dtype_name(t.data_type), "dims": list(t.dims)} for t in config.input],
                "outputs": [{"name": t.name, "dtype": cfg.dtype_name(t.data_type), "dims": list(t.dims)} for t in config.output],
                "versions": cfg.version_folders(entry),
            }
        )
    lines = [f"Triton repository {repo}: {len(models)} model(s)"]
    for m in models:
        lines.append(
            f"  {m['name']} ({m['kind']}, max_batch_size {m['max_batch_size']}, versions {', '.join(m['versions']) or '-'})"
        )
        lines.append("    in:  " + ", ".join(f"{t['name']} {t['dtype']} {t['dims']}" for t in m["inputs"]))
        lines.append("    out: " + ", ".join(f"{t['name']} {t['dtype']} {t['dims']}" for t in m["outputs"]))
    return {"kind": "repository", "path": str(repo), "models": models, "summary": "\n".join(lines)}


def _tree(pid: int) -> list[int]:
    """tritonserver and its python-backend stubs: the process and its live descendants."""
    from ...serve.processes import descendants

    return sorted({pid, *(child.pid for child in descendants(pid))})


@register_target
class TritonTarget(ServerTarget):
    name = "triton"
    Options = TritonOptions
    description = "Triton Inference Server (repository API, explicit model control)"
    packaged_by_build = True
    artifact = "repository"
    bench = BenchProfile(
        runtime="Triton's python backend",
        work="model only (tensor in, raw outputs back)",
        defaults={"workers": 1, "batch_size": 8, "max_batch_delay_ms": 1, "backend": "python", "format": "onnx"},
        settings=("workers", "batch_size", "max_batch_delay_ms", "threads"),
        tensors=True,  # the PyPI tritonserver has no image decoding: it is sent what the handler makes of the image
        load_timings=("load_s",),
        goal=0.9,
        same_runtime="inprocess-onnx-tensor",
    )
    kserve = KServeRuntime(
        model_format="triton",
        runtime="kserve-tritonserver",
        protocols=("v2",),
        ready={"v2": "/v2/health/ready"},
        args=("--strict-model-config=true", "--log-info=true"),
    )

    def repo(self, build_dir: Path, report: BuildReport, opts: Any) -> dict[str, Any]:
        from . import repo

        return repo(build_dir, report, opts)

    def check_repo(self, path: Path) -> dict[str, Any]:
        from .check import check_repository

        return check_repository(path)

    def tuning_space(self, report: BuildReport) -> tuple[dict[str, list[Any]], dict[str, Any]]:
        """`pack tune`: the settings it may change (deploy option names) with their candidates, and where to start."""
        from .tuning import tuning_space

        return tuning_space(report)

    def adopt_settings(self, build_dir: Path, report: BuildReport, settings: dict[str, Any], tuned: dict[str, Any]) -> list[str]:
        """`pack tune`: write `settings` into the build's artifacts (checked offline, atomic); the files written."""
        from .tuning import adopt

        return adopt(build_dir, report, settings, tuned)

    def owns(self, path: Path) -> bool:
        return path.is_dir() and any((p / "config.pbtxt").is_file() for p in path.iterdir() if p.is_dir())

    def verify(self, path: Path) -> list[tuple[str, str]]:
        checked = self.check_repo(path)
        return [(str(path / p["model"]), p["message"]) for p in checked["problems"] if p["severity"] == "error"]

    def inspect(self, path: Path) -> dict[str, Any]:
        return inspect_repository(path)

    def read_source(self, path: Path) -> MigrationSource | None:
        from .migration import read_source

        return read_source(path)

    def extract_source(self, source: MigrationSource, dest: Path) -> Extracted:
        from .migration import extract_source

        return extract_source(source, dest)

    def run_old(self, source: MigrationSource, found: Extracted, request: Request, model: Any = None) -> Any:
        return None  # a libtorch model alone: pack runs the TorchScript file itself

    def ask_old(self, url: str, model: str, source: MigrationSource, request: Request, token: str | None) -> Any:
        from .migration import ask_old

        return ask_old(url, model, request, [i["name"] for i in source.inputs], source.outputs)

    def endpoint(self, deployed: dict[str, Any], report: BuildReport, store: Path, request: Request) -> Endpoint:
        """The deploy's `infer_url` (v2 infer of the model and version) with the model's input tensors in the
        binary-data extension (what tritonclient sends with binary_data=True). For detection builds: the detector
        itself, not the ensemble."""
        from .repository import io_names

        in_names, out_names = io_names(report, deployed.get("backend", "python"))
        body, head_len = v2_binary_body(in_names, request.tensors, out_names)
        pid = (deployed.get("server") or {}).get("pid")
        arrays = request.tensors
        return Endpoint(
            base_url=deployed["url"],
            path=urllib.parse.urlsplit(deployed["infer_url"]).path,
            headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(head_len)},
            body=body,
            payload=f"pre-processed tensor {list(arrays[0].shape)} {arrays[0].dtype} (v2 binary data, {len(body)} bytes)",
            compare_with="inprocess-onnx-tensor",
            pids=(lambda: _tree(pid)) if pid else (lambda: []),
        )

    def kserve_storage(
        self, build_dir: Path, report: BuildReport, dest: Path, protocol: str, fmt: str | None, gpus: int
    ) -> tuple[str, Served]:
        """A model repository on the native backend of the served format (NVIDIA's server images have onnxruntime,
        pytorch and torch_aoti; ONNX by default, else the first format the build has that one of them loads), checked
        offline. An ExportedProgram has no native backend: asked for, it is refused in one line."""
        from .check import check_repository, raise_on_errors
        from .repository import NATIVE_FORMAT, RepoOptions, generate, serving_model

        backends = {f: b for b, f in NATIVE_FORMAT.items()}
        fmt = served(report, fmt, tuple(backends)).format  # one line naming the build's reason when it lacks it
        ropts = RepoOptions(backend=backends[fmt], fmt=fmt, gpu=gpus > 0)
        section = generate(build_dir, report, ropts, dest)
        raise_on_errors(check_repository(dest))
        return serving_model(report, ropts.backend), Served(section["format"], section["served_file"])
