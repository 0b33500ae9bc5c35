"""`pack migrate SOURCE`: read the source, build it behind the gate, prove the new answers equal the old, report.

The build is a pack build like any other (every default format behind the gate, its provenance naming the source's
digest); the proof (proof.py) decides the exit code: a migration whose answers disagree is exit 3, after its report.
With `--against`, the build is deployed on `--target` (Triton by default) through that target's own deploy, asked
over the Open Inference Protocol, and left serving when the answers agree (undeployed when they do not).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError, ValidationFailed
from ..report.build_report import BuildReport
from ..safeio import load_json
from ..targets import MIGRATABLE, capable, get_target
from ..targets.capabilities import Request
from ..targets.migration import Extracted, MigrationSource
from . import proof
from .source import SPEC, extract, model_name, read, require_trust, spec_for

logger = logging.getLogger(__name__)
COMPARABLE_LIVE = ("tensors",)  # a model alone (a Triton folder) can be asked for its tensors
Model = Any  # list[np.ndarray] -> list[np.ndarray]: the build's model, in this process or served


@dataclass
class MigrateOptions:
    source: Path
    store: Path
    name: str | None = None
    version: str | None = None
    trust_archive_code: bool = False
    inputs: list[Any] = field(default_factory=list)  # TensorSpecs from --input
    formats: tuple[str, ...] | None = None
    against: str | None = None
    against_model: str | None = None
    token: str | None = None
    target: str | None = None  # None: the first target that `pack bench` can ask (the registry's order: Triton first)
    samples: list[Path] = field(default_factory=list)
    force: bool = False
    iterations: int = 20
    measure_budget: float = 3.0
    sign: Any = None
    cache: Path | None = None
    repo: bool = False  # write the Triton repository entry once the answers agree
    kserve_storage_uri: str | None = None  # write the KServe storage folder and InferenceService once they agree


def _write_spec(found: Extracted, spec: dict[str, Any]) -> Path:
    import yaml

    folder = found.model.parent
    relative = {k: (str(Path(v).relative_to(folder)) if k in ("source", "weights", "labels") else v) for k, v in spec.items()}
    path = folder / SPEC
    tmp = path.with_name(f".{SPEC}.tmp")
    tmp.write_text(yaml.safe_dump(relative, sort_keys=False))
    tmp.replace(path)
    return path


def _build(
    opts: MigrateOptions, source: MigrationSource, found: Extracted, packagers: dict[str, Any]
) -> tuple[Any, BuildReport, Path]:
    from ..build.pipeline import build
    from ..build.plan import resolve

    spec = spec_for(source, found, model_name(source, opts.name), None)
    overrides: dict[str, Any] = {"version": opts.version, "device": "cpu"}
    if opts.inputs:
        overrides["inputs"] = opts.inputs
    if opts.formats:
        overrides["formats"] = opts.formats
    plan = resolve(None, str(_write_spec(found, spec)), overrides)
    plan = dataclasses.replace(plan, migrated_from={"kind": source.kind, "ref": source.path.name, "sha256": source.sha256})
    report, folder = build(
        plan, opts.store, opts.force, opts.iterations, packagers, opts.measure_budget, sign=opts.sign, cache=opts.cache
    )
    return plan, report, folder


def _model_outputs(value: Any) -> list[np.ndarray]:
    """A model's outputs as the build names and orders them (build/modelio.py `flatten`: nested lists and dicts)."""
    import torch

    from ..build.modelio import flatten

    leaves, _ = flatten(value, lambda v: isinstance(v, torch.Tensor))
    return [t.detach().numpy() for _, t in leaves]


def _old_model(plan: Any, source: MigrationSource, found: Extracted) -> Any:
    """The source's own model in this process: its TorchScript file, or its eager class with the archive's weights."""
    import torch

    from ..console import on_purpose

    if source.torchscript:
        with on_purpose("torch.jit.load"):
            return torch.jit.load(str(found.model), map_location="cpu").eval()  # type: ignore[no-untyped-call]
    from ..build.loader import load_module

    return load_module(plan)[0].eval()


def _new_runner(folder: Path, report: BuildReport) -> Any:
    from ..bench.inprocess import onnx_runner
    from ..export import runner_for
    from ..report.formats import served

    chosen = served(report, None)
    return onnx_runner(folder, report) if chosen.format == "onnx" else runner_for(chosen.format, folder / chosen.file)


def _oip(url: str, headers: dict[str, str], names: list[str], arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The served build's outputs for `arrays`, over the Open Inference Protocol (v2 JSON)."""
    from ..serve.http import HttpClient, translated
    from ..serve.oip import NUMPY_TO_V2

    body = {
        "inputs": [
            {"name": n, "shape": list(a.shape), "datatype": NUMPY_TO_V2[str(a.dtype)], "data": a.reshape(-1).tolist()}
            for n, a in zip(names, arrays, strict=True)
        ]
    }
    client = HttpClient(url, timeout=120)
    with translated(f"asking the migrated build at {url}", refused=ValidationFailed):
        answer = client.request("POST", "", body=json.dumps(body).encode(), content_type="application/json", headers=headers)
    doc = load_json(answer.body, url)
    return [np.asarray(o["data"], dtype=np.float64).reshape(o["shape"]) for o in doc.get("outputs", [])]


def _deploy(
    opts: MigrateOptions, folder: Path, report: BuildReport, source: MigrationSource
) -> tuple[Any, dict[str, Any], Model]:
    """The build deployed on the target (the source's settings carried over); the model it serves, as a function."""
    from ..report.samples import load_sample
    from ..targets import BENCHABLE, require

    target = get_target(opts.target or next(iter(capable(BENCHABLE))))
    benchable = require(BENCHABLE, target)
    fields = {f.name for f in dataclasses.fields(target.Options)}
    settings = {k: v for k, v in source.settings.items() if k in fields}
    result = target.deploy(folder, report, target.Options(store=opts.store, **settings))
    sample = Request(b"", "application/json", "the build's sample", list(load_sample(folder, report).inputs))
    endpoint = benchable.endpoint(result, report, opts.store, sample)
    headers = {k: v for k, v in endpoint.headers.items() if k.lower() == "authorization"}
    names = [i.name for i in report.inputs]
    return target, result, lambda arrays: _oip(result["infer_url"], headers, names, arrays)


def _old(
    opts: MigrateOptions, how: str, source: MigrationSource, found: Extracted, plan: Any, reqs: list[Request]
) -> tuple[list[Any], str]:
    """The old side's answers and what they are (proof.judge's kind)."""
    reader = capable(MIGRATABLE)[source.reader]
    if opts.against:
        model = opts.against_model or source.model_name
        answers = [reader.ask_old(opts.against, model, source, r, opts.token) for r in reqs]
    elif how == proof.TENSORS:
        answers = []
    else:
        answers = [reader.run_old(source, found, r) for r in reqs]
    if answers and answers[0] is not None:
        return answers, {proof.IMAGE: source.answers, proof.STEPS: "json"}.get(how, "tensors")
    import torch

    module = _old_model(plan, source, found)
    with torch.no_grad():
        return [_model_outputs(module(*[torch.from_numpy(t) for t in r.tensors])) for r in reqs], "tensors"


def migrate(opts: MigrateOptions, packagers: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Migrate one source; (the migration report, whether every answer agreed)."""
    source, reader = read(opts.source)
    how = proof.mode(source, opts.samples)
    require_trust(source, opts.trust_archive_code, steps=how == proof.STEPS)
    if opts.against and how == proof.TENSORS and source.answers not in COMPARABLE_LIVE:
        raise UsageError(
            f"{source.path}'s endpoint answers through {source.handler}, whose requests pack cannot make",
            "pass --sample FILE with a request body that handler reads, or drop --against to compare the model alone",
        )
    if not source.inputs and not opts.inputs:
        raise UsageError(f"{source.path} does not say what its model takes", "give its inputs with --input NAME:SHAPE[:DTYPE]")
    if opts.against and opts.target:
        from ..targets import BENCHABLE

        askable = capable(BENCHABLE)
        if get_target(opts.target).name not in askable:  # refused before any work
            raise UsageError(f"--target {opts.target} cannot serve the build to be asked", f"use {' or '.join(askable)}")
    found = extract(source, reader, opts.store)
    plan, report, folder = _build(opts, source, found, packagers)
    reqs = proof.requests(how, folder, report, opts.samples)
    old, kind = _old(opts, how, source, found, plan, reqs)  # the old server is asked before anything is served
    target, deployed, run = _deploy(opts, folder, report, source) if opts.against else (None, {}, _new_runner(folder, report))
    if kind == "json":
        steps = capable(MIGRATABLE)[reader]
        new = [steps.run_old(source, found, r, run) for r in reqs]
    else:
        new = [run(list(r.tensors)) for r in reqs]
    tol = (float(report.tolerance.get("atol", 1e-4)), float(report.tolerance.get("rtol", 1e-3)))
    outputs = [o.name for o in report.outputs]
    verdicts = [proof.judge(kind, r, o, n, outputs, source.labels, tol) for r, o, n in zip(reqs, old, new, strict=True)]
    agreed = all(v.agree for v in verdicts)
    if target is not None and not agreed:
        target.undeploy(report.name, report.version, target.Options(store=opts.store))
    old_side = f"{opts.against} ({opts.against_model or source.model_name})" if opts.against else "the source, in this process"
    new_side = f"{deployed['target']}: {deployed['infer_url']}" if deployed else "pack's runtime, in this process"
    if kind == "json":
        new_side += f", inside {source.handler}'s own steps"
    doc = {
        "source": source.to_dict(),
        "build": {
            "name": report.name,
            "version": report.version,
            "path": str(folder.resolve()),
            "formats": _passed(report),
            "cache": report.cache.get("status"),
        },
        "proof": {
            "old": old_side,
            "new": new_side,
            "compared": kind,
            "agreed": agreed,
            "requests": [v.to_dict() for v in verdicts],
        },
        "changes": _changes(source, report),
    }
    if agreed and (opts.repo or opts.kserve_storage_uri):
        from .outputs import write

        doc["outputs"] = write(source, folder, report, opts.store, opts.repo, opts.kserve_storage_uri)
    return doc, agreed


def _kserve() -> str:
    from ..targets import MANIFEST_CHECKER, sole

    return str(getattr(sole(MANIFEST_CHECKER), "name", ""))


def _passed(report: BuildReport) -> list[str]:
    return [name for name, record in report.formats.items() if record.status == "passed"]


def _changes(source: MigrationSource, report: BuildReport) -> dict[str, Any]:
    """What is different for the model's clients and operators."""
    from ..serve.settings import SETTINGS

    served = "TorchScript" if source.torchscript else "an eager model"
    flags = "".join(f" {SETTINGS[k].flag} {v}" for k, v in source.settings.items() if k in SETTINGS)
    ref = f"{report.name} --version {report.version}"
    return {
        "formats": f"{source.handler} serving {served} -> {', '.join(_passed(report))}",
        "inputs": [i.name for i in report.inputs],
        "preprocessing": source.preprocessing or "none (tensors in)",
        "settings": source.settings,
        "notes": source.notes,
        "next": [  # the build is a pack build: every command takes it
            f"pack deploy {ref}{flags}",
            f"pack repo {ref}{flags}",
            f"pack deploy {ref} --target {_kserve()} --storage-uri URI",
        ],
    }
