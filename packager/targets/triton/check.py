"""Offline validation of a Triton model repository: every config.pbtxt, parsed back with protobuf, against its files.

Checked per entry: the config parses and names its folder; the version folders the version policy serves have the
file the backend loads; input/output names, data types and dims against the ONNX graph (onnxruntime, python backend
running ONNX) or a TorchScript run (pytorch, python backend running TorchScript); batch axes against max_batch_size;
model_warmup data files; ensemble wiring (every composing input mapped, every tensor produced, types and shapes
agree). Each problem names the model, the field and both values.

This module walks the repository and each entry's versions; the comparisons live in check_model.py (one entry
against its model files, read by check_io.py) and check_ensemble.py (an ensemble's wiring).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ...errors import UsageError, ValidationFailed
from . import config as cfg
from .check_ensemble import check_ensemble
from .check_io import TensorInfo
from .check_model import EntryChecker, Problem
from .check_ranges import check_ranges

logger = logging.getLogger(__name__)

CHECKED_KINDS = ("onnxruntime", "pytorch", "torch_aoti", "python", "ensemble")


def served_versions(config: Any, versions: list[str]) -> list[str]:
    ordered = sorted(versions, key=int)
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return ordered
    if which == "specific":
        return [v for v in ordered if int(v) in set(policy.specific.versions)]
    n = policy.latest.num_versions if which == "latest" else 1
    return ordered[-max(n, 1) :]


def check_entry(repo: Path, name: str, configs: dict[str, Any]) -> list[Problem]:
    config = configs[name]
    chk = EntryChecker(repo, name, config)
    if config.name and config.name != name:
        chk.add("name", repr(config.name), f"the folder is named {name!r}")
    kind = cfg.kind_of(config)
    if kind not in CHECKED_KINDS:
        chk.add("backend", kind, "pack checks onnxruntime, pytorch, torch_aoti, python and ensemble models only", "warning")
        return chk.problems
    check_ranges(chk)  # first: a value out of range is the line the user sees
    _check_batching(chk)
    _check_classification(chk, repo, name)
    versions = cfg.version_folders(repo / name)
    if not versions:
        chk.add("versions", "at least one version folder", f"{repo / name} has no numeric version folder")
        return chk.problems
    if kind == "ensemble":
        check_ensemble(chk, configs)
        return chk.problems
    _check_versions(chk, versions, kind)
    return chk.problems


def _check_batching(chk: EntryChecker) -> None:
    """max_batch_size, model_warmup and dynamic_batching against each other."""
    config = chk.config
    chk.check_warmup()
    if config.HasField("dynamic_batching") and config.max_batch_size == 0:
        chk.add("dynamic_batching", "dynamic batching", "max_batch_size is 0, so Triton refuses it")
    for size in config.dynamic_batching.preferred_batch_size:
        if size > config.max_batch_size:
            chk.add("dynamic_batching.preferred_batch_size", size, f"max_batch_size is {config.max_batch_size}")


def _check_classification(chk: EntryChecker, repo: Path, name: str) -> None:
    """An input's image format needs 3 dims (Triton refuses NCHW/NHWC otherwise); an output's label_filename names
    a file beside config.pbtxt (Triton's classification extension reads it)."""
    none = cfg.pb().ModelInput.FORMAT_NONE
    for entry in chk.config.input:
        if entry.format != none and len(entry.dims) != 3:
            fmt = cfg.pb().ModelInput.Format.Name(entry.format)
            chk.add(f"input {entry.name}.format", f"{fmt} on 3 dims", f"{len(entry.dims)} dims (Triton refuses it)")
    for entry in chk.config.output:
        if entry.label_filename and not (repo / name / entry.label_filename).is_file():
            chk.add(f"output {entry.name}.label_filename", entry.label_filename, "no such file beside config.pbtxt")


def _check_versions(chk: EntryChecker, versions: list[str], kind: str) -> None:
    """Every version folder; problems of a version the policy does not serve are warnings."""
    config = chk.config
    served = served_versions(config, versions)
    if not served:
        chk.add(
            "version_policy",
            str(config.version_policy).strip() or "latest 1",
            f"no version folder matches (folders: {', '.join(sorted(versions, key=int))})",
        )
    for version in sorted(versions, key=int):
        chk.version = version
        before = len(chk.problems)
        check_version(chk, chk.repo / chk.name / version, kind)
        if version not in served:  # kept for rollback; not what Triton loads now
            for p in chk.problems[before:]:
                p.severity = "warning"


def _read_onnx(chk: EntryChecker, path: Path) -> tuple[list[TensorInfo], list[TensorInfo]] | None:
    """The ONNX file's (inputs, outputs), or None with the finding that it cannot be read."""
    from .check_io import onnx_io

    try:
        return onnx_io(path)
    except Exception as exc:  # noqa: BLE001 - a corrupt file is a finding, not a crash
        chk.add("model file", path.name, f"it is not a readable ONNX model ({type(exc).__name__}: {str(exc).strip()[:160]})")
        return None


def _check_onnx(chk: EntryChecker, path: Path) -> None:
    found = _read_onnx(chk, path)
    if found is not None:
        chk.compare_io(found[0], found[1], path.name)


def check_version(chk: EntryChecker, vdir: Path, kind: str) -> None:
    config = chk.config
    filename = cfg.model_filename(config)
    if filename is None:  # check_entry() checks only backends that have a default model file
        return
    path = vdir / filename
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in vdir.iterdir())) or "nothing"
        chk.add("default_model_filename" if config.default_model_filename else "model file", filename, f"{vdir} holds {found}")
        return
    if kind == "onnxruntime":
        if path.suffix != ".onnx":
            chk.add("default_model_filename", filename, "the onnxruntime backend loads an .onnx file")
        _check_onnx(chk, path)
    elif kind == "pytorch":
        chk.check_torchscript(path, by_position_names=True)
    elif kind == "torch_aoti":
        chk.check_aoti_names()
        chk.check_program(path, "aoti")
    elif kind == "python":
        _check_python_model(chk, vdir, path)


def _check_python_model(chk: EntryChecker, vdir: Path, path: Path) -> None:
    """A python-backend model.py compiles and defines TritonPythonModel; the export pack's model.py runs matches."""
    config = chk.config
    source = path.read_text(errors="replace")
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        chk.add("model.py", "a python backend model", f"it does not compile: line {exc.lineno}: {exc.msg}")
        return
    if "TritonPythonModel" not in source:
        chk.add("model.py", "a python backend model", "it defines no class TritonPythonModel")
    fmt = cfg.get_parameter(config, "pack_format")
    if fmt is None:
        return
    model_file = vdir / (cfg.get_parameter(config, "pack_model_file") or ("model.onnx" if fmt == "onnx" else "model.pt"))
    if not model_file.is_file():
        chk.add("parameters.pack_model_file", model_file.name, f"{vdir} has no such file")
    elif cfg.get_parameter(config, "pack_steps"):  # the config names the steps' tensors, not the export's
        _check_steps_model(chk, model_file, fmt)
    elif fmt == "onnx":
        _check_onnx(chk, model_file)
    elif fmt == "torchscript":
        chk.check_torchscript(model_file, by_position_names=False)
    elif fmt in ("pt2", "aoti"):
        chk.check_program(model_file, fmt)
    else:
        chk.add("parameters.pack_format", fmt, "model.py runs onnx, torchscript, pt2 or aoti")


def _check_steps_model(chk: EntryChecker, path: Path, fmt: str) -> None:
    """A model.py that runs its steps around the export (pack_steps): the ONNX export has the input and output it
    feeds and reads by name (the torch formats take them by position)."""
    found = _read_onnx(chk, path) if fmt == "onnx" else None
    for kind, key, tensors in zip(("input", "output"), ("pack_model_input", "pack_model_output"), found or (), strict=False):
        want, names = cfg.get_parameter(chk.config, key), [t.name for t in tensors]
        if want not in names:
            chk.add(f"parameters.{key}", repr(want), f"{path.name} has no {kind} of that name (its {kind}s: {', '.join(names)})")


def load_configs(repo: Path) -> tuple[dict[str, Any], list[Problem]]:
    configs: dict[str, Any] = {}
    problems: list[Problem] = []
    for entry in sorted(repo.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() or (entry.is_dir() and _links(entry)):
            link = entry if entry.is_symlink() else _links(entry)[0]
            problems.append(Problem(entry.name, "files", "plain files and folders", f"{link} is a symbolic link"))
            continue
        if not entry.is_dir():
            continue
        path = entry / cfg.CONFIG_FILE
        if not path.is_file():
            problems.append(Problem(entry.name, "config.pbtxt", "a config.pbtxt", f"{entry} has none", severity="warning"))
            continue
        try:
            configs[entry.name] = cfg.read(path)
        except ValidationFailed as exc:
            problems.append(Problem(entry.name, "config.pbtxt", "valid protobuf text", exc.message))
    return configs, problems


def _links(entry: Path) -> list[Path]:
    """Symbolic links inside a repository entry (pack writes none and Triton would follow them out of the folder)."""
    return [p for p in sorted(entry.rglob("*")) if p.is_symlink()]


def check_repository(repo: Path, only: list[str] | None = None) -> dict[str, Any]:
    """Check every entry (or `only` these) of a repository; returns the result document (does not raise)."""
    if not repo.is_dir():
        raise UsageError(f"{repo} is not a folder", "give the path of a Triton model repository (e.g. model_store/triton)")
    configs, problems = load_configs(repo)
    names = [n for n in configs if only is None or n in only]
    models = []
    for name in names:
        found = check_entry(repo, name, configs)
        problems.extend(found)
        models.append(
            {
                "name": name,
                "kind": cfg.kind_of(configs[name]),
                "max_batch_size": configs[name].max_batch_size,
                "versions": cfg.version_folders(repo / name),
                "ok": not any(p.severity == "error" for p in found),
            }
        )
    errors = [p for p in problems if p.severity == "error"]
    return {
        "repository": str(repo),
        "ok": not errors,
        "models": models,
        "problems": [p.to_dict() for p in problems],
        "summary": _summary(repo, models, problems),
    }


def _summary(repo: Path, models: list[dict[str, Any]], problems: list[Problem]) -> str:
    errors = [p for p in problems if p.severity == "error"]
    lines = [f"{repo}: {len(models)} model(s), {len(errors)} problem(s)"]
    for m in models:
        lines.append(
            f"  {'ok  ' if m['ok'] else 'FAIL'} {m['name']} ({m['kind']}, max_batch_size {m['max_batch_size']}, "
            f"versions {', '.join(m['versions']) or '-'})"
        )
    for p in problems:
        lines.append(f"  {p.severity}: {p.line()}")
    return "\n".join(lines)


def raise_on_errors(result: dict[str, Any], report_problems: bool = True) -> None:
    errors = [p for p in result["problems"] if p["severity"] == "error"]
    if report_problems:
        for p in result["problems"]:
            logger.info(f"{p['severity']}: {p['message']}")
    if errors:
        more = f" (and {len(errors) - 1} more problem(s) above)" if len(errors) > 1 else ""
        raise ValidationFailed(f"{errors[0]['message']}{more}", "fix config.pbtxt or regenerate it with `pack repo`")
