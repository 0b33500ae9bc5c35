"""BuildReport: the typed, versioned record of a build (`report.json`). It owns the file's name, loading (checked
against the JSON Schema shipped in packager/schemas/report.schema.json, older versions migrated), saving (digests of
every file, written atomically) and the questions every reader asks of a build. Every module reads a build through it.

Version 2 (pack 0.2): formats with outcomes, export details per format, validation cases, gate limits per output,
the binding of inputs, and the weights' state_dict digest. Version 1 (pack 0.1) reports are migrated on load.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..errors import UsageError, ValidationFailed
from ..safeio import load_json
from .files import digests_file, plain, sha256_file

FILE = "report.json"
VERSION = 2
MAX_BYTES = 64 * 1024 * 1024  # a report is kilobytes; a larger file is not one of pack's


@dataclass
class TensorRecord:
    """An input (or, with the gate fields, an output) of the model as the build recorded it."""

    name: str
    shape: list[int]
    dtype: str
    dynamic_axes: list[int] = field(default_factory=lambda: [0])
    range: list[float] | None = None
    dim_names: dict[str, str] = field(default_factory=dict, kw_only=True)  # declared names of dynamic axes
    variable: list[int] = field(default_factory=list, kw_only=True)  # output axes whose size depends on the data

    @property
    def batch_axis(self) -> int | None:
        """The dynamic axis named `batch` (axis 0 unless a name says otherwise), or None."""
        named = {a: self.dim_names.get(str(a)) or ("batch" if a == 0 else "") for a in self.dynamic_axes}
        return next((a for a, n in named.items() if n == "batch"), None)

    def served_dims(self) -> list[int]:
        """The shape a server declares: -1 on every dynamic axis and every axis whose size depends on the data, never
        one sample's size there (a detector with no boxes in its sample still serves boxes)."""
        free = {*self.dynamic_axes, *self.variable}
        return [-1 if axis in free else int(size) for axis, size in enumerate(self.shape)]


@dataclass
class InputRecord(TensorRecord):
    fill: dict[str, str] | None = None  # the example values and the rule that chose them (report/cases.py)


@dataclass
class OutputRecord(TensorRecord):
    atol: float = 1e-4
    rtol: float = 1e-3
    gate: dict[str, Any] = field(default_factory=dict)  # scale, atol_effective, detectable_abs_error, constant


@dataclass
class FormatRecord:
    status: str  # passed | failed | skipped
    file: str | None = None
    reason: str = ""
    fix: str = ""


@dataclass
class SampleRecord:
    batch: int
    inputs: list[str]
    outputs: list[str]


@dataclass
class BuildReport:
    name: str
    version: str
    task: str
    source: dict[str, str]
    weights: dict[str, Any]
    versions: dict[str, str]
    device: str
    inputs: list[InputRecord]
    outputs: list[OutputRecord]
    batch_sizes: list[int]
    seed: int
    tolerance: dict[str, float]
    samples: SampleRecord
    artifacts: dict[str, str]
    formats: dict[str, FormatRecord] = field(default_factory=dict)
    export: dict[str, dict[str, Any]] = field(default_factory=dict)
    validation: dict[str, dict[str, Any]] = field(default_factory=dict)
    binding: str = ""
    cases: list[dict[str, Any]] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    postprocessing: dict[str, Any] = field(default_factory=dict)
    labels: str | None = None
    performance: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)  # faster ONNX variants and the one served (packager/variants/)
    calling: dict[str, Any] = field(default_factory=lambda: {"args": [], "returns": "tuple"})  # how to call the exports
    signature: dict[str, Any] = field(default_factory=dict)  # what the last rewrite of the build did to its signature
    build_seconds: float = 0.0
    cache: dict[str, Any] = field(default_factory=dict)  # the build cache: {"status": hit|miss|off, "key"} (build/cache.py)
    crc32: dict[str, int] = field(default_factory=dict)  # CRC-32 by sha256 (never stale): `pack archive` skips its pass
    sha256: dict[str, str] = field(default_factory=dict)
    pack_report: int = VERSION

    # ---------------------------------------------------------------- questions every reader asks

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    @property
    def batchable(self) -> bool:
        """Every input's batch is its first axis and every output's first axis is dynamic: requests can be batched
        together (stacked on axis 0)."""
        return self.inputs_batchable and all(0 in t.dynamic_axes for t in self.outputs)

    @property
    def inputs_batchable(self) -> bool:
        return all(t.batch_axis == 0 for t in self.inputs)

    def served_variant(self) -> dict[str, Any] | None:
        """The record of the ONNX variant the targets serve (packager/variants/), or None: they serve the export."""
        served = self.variants.get("served")
        return next((r for r in self.variants.get("results", []) if served and r.get("kind") == served and r.get("file")), None)

    def served_file(self, fmt: str) -> str | None:
        """The file a target serves for `fmt`: the served variant's for ONNX when one was chosen, else the export.
        The one place the choice is resolved (TorchServe's .mar, the Triton repository, bench)."""
        variant = self.served_variant() if fmt == "onnx" else None
        return str(variant["file"]) if variant else self.artifacts.get(fmt)

    def target(self, name: str) -> dict[str, Any]:
        """The section a target wrote at build time (empty when it wrote none)."""
        return self.targets.get(name) or {}

    # ---------------------------------------------------------------- file

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = plain(dataclasses.asdict(self))
        for tensor in [*data["inputs"], *data["outputs"]]:
            for key in ("range", "fill"):
                if key in tensor and tensor[key] is None:
                    del tensor[key]  # only inputs with a declared value range carry one; reports before 0.3 no fill
            for key in ("dim_names", "variable"):
                if not tensor.get(key):
                    tensor.pop(key, None)  # written where declared (inputs) or found (outputs)
        for record in data["formats"].values():
            if record.get("file") is None:
                record.pop("file", None)  # a format that did not pass has no file
        if not data["signature"]:
            del data["signature"]  # written only once a command rewrote a build (packager/report/trust.py)
        return data

    def check(self, where: str = FILE) -> dict[str, Any]:
        """The report as written, checked against the shipped schema: what pack writes, pack reads back."""
        data = self.to_dict()
        problems = _problems(data)
        if problems:  # a bug in pack, said in one line: nothing is written
            raise ValidationFailed(
                f"the {where} pack made does not match its own schema: {problems[0]}",
                "nothing was written; rerun with --debug and report it",
            )
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = FILE) -> BuildReport:
        if not isinstance(data, dict):
            raise ValidationFailed(f"{where} is not a JSON object", "rebuild with `pack build`")
        data = migrate(dict(data))
        problems = _problems(data)
        if problems:
            raise ValidationFailed(
                f"{where}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                "the report does not match what pack writes; rebuild with `pack build`",
            )
        _check_identity(data, where)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["inputs"] = [InputRecord(**_fields(InputRecord, i)) for i in data["inputs"]]
        values["outputs"] = [OutputRecord(**_fields(OutputRecord, o)) for o in data["outputs"]]
        values["formats"] = {k: FormatRecord(**_fields(FormatRecord, v)) for k, v in (data.get("formats") or {}).items()}
        values["samples"] = SampleRecord(**_fields(SampleRecord, data["samples"]))
        values["version"] = str(data["version"])
        return cls(**values)

    @classmethod
    def load(cls, folder: Path) -> BuildReport:
        path = Path(folder) / FILE
        if not path.is_file():
            raise UsageError(f"no {FILE} in {folder}", "run `pack build` first")
        if path.is_symlink():
            raise ValidationFailed(f"{path} is a symbolic link", "rebuild with `pack build`; pack never follows links in a build")
        if path.stat().st_size > MAX_BYTES:
            raise ValidationFailed(
                f"{path} is {path.stat().st_size:,d} bytes, not a report pack wrote", "rebuild with `pack build`"
            )
        try:
            data = load_json(path.read_text(encoding="utf-8"), str(path))  # bounded nesting (safeio.MAX_DEPTH)
        except OSError as exc:
            raise UsageError(
                f"cannot read {path}: {exc.strerror or exc}", "check its permissions, or rebuild with `pack build`"
            ) from None
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ValidationFailed(f"{path} is not valid JSON ({str(exc)[:120]})", "rebuild with `pack build`") from None
        return cls.from_dict(data, str(path))

    def save(self, folder: Path, rewritten: list[str] | None = None) -> None:
        """Record every file's digest (all but the report and a signature), or only those of the `rewritten` files (the
        others keep the digests pack verified), write the provenance statement of those digests (provenance.py), and
        write the report atomically."""
        from . import provenance

        folder = Path(folder)
        if rewritten is not None:
            self.record_files(folder, rewritten)
        else:
            self.sha256, self.crc32 = {}, {}
            self.record_files(
                folder,
                [
                    rel
                    for p in sorted(folder.rglob("*"))
                    if p.is_file() and p.name != FILE and (rel := p.relative_to(folder).as_posix()) not in provenance.NOT_SUBJECTS
                ],
            )
        data = self.check()  # before any file is written: a report pack could not read back is never saved
        provenance.write(folder, data, self.sha256)  # the statement of these digests, kept in step with the report
        self.record_files(folder, [provenance.FILE])
        data["sha256"], data["crc32"] = self.sha256, self.crc32
        text = json.dumps(data, indent=2, sort_keys=False) + "\n"
        tmp = folder / f".{FILE}.{os.getpid()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, folder / FILE)

    def record_files(self, folder: Path, relative: list[str]) -> None:
        """Update the digests of files rewritten after the build (`pack archive`)."""
        for rel in relative:
            self.sha256[rel], crc = digests_file(Path(folder) / rel)
            self.crc32[self.sha256[rel]] = crc
        self.sha256 = dict(sorted(self.sha256.items()))
        kept = set(self.sha256.values())
        self.crc32 = {digest: crc for digest, crc in sorted(self.crc32.items()) if digest in kept}


def _check_identity(data: dict[str, Any], where: str) -> None:
    """The report's name and version pass the gate every command uses (packager/report/names.py)."""
    from .names import check_name, check_version

    try:
        check_name(data["name"])
        check_version(data["version"])
    except UsageError as exc:
        raise ValidationFailed(f"{where}: {exc.message}", "rebuild with `pack build`") from None


def _fields(cls: type, data: Any) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((files("packager") / "schemas" / "report.schema.json").read_text())
    return loaded


def _problems(data: dict[str, Any]) -> list[str]:
    """Where `data` departs from the report schema; the quick check proves most reports conform without jsonschema."""
    from .conforms import conforms

    if conforms(data, schema()):
        return []
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {_message(e)}" for e in errors]


def _message(error: Any) -> str:
    if error.validator == "not":  # the relative-path rule: absolute, '..' or NUL
        return f"{str(error.instance)[:120]!r} names a path outside the build folder"
    return str(error.message)[:200]


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older report to the current version: pack 0.1 wrote version 1 (two formats, no outcomes); version 2
    reports written before the calling convention was recorded return tuples from every export, and some recorded a
    failed format's missing file as null; a report without a `signature` record was never rewritten by a command that
    records one (it stays absent: nothing is known about it)."""
    version = data.get("pack_report", 1)
    if version not in (1, VERSION):
        raise ValidationFailed(f"report version {version!r} is newer than this pack understands ({VERSION})", "upgrade pack")
    if version == 1:
        _from_version_1(data)
    inputs = data.get("inputs")
    inputs = inputs if isinstance(inputs, list) else []
    data.setdefault("calling", {"args": [i.get("name") for i in inputs if isinstance(i, dict)], "returns": "tuple"})
    formats = data.get("formats")
    if isinstance(formats, dict):
        for record in formats.values():
            if isinstance(record, dict) and "file" in record and record["file"] is None:
                del record["file"]
    return data


def _from_version_1(data: dict[str, Any]) -> None:
    artifacts = data.get("artifacts") or {}
    data["formats"] = {fmt: {"status": "passed", "file": rel} for fmt, rel in artifacts.items()}
    data.setdefault("cases", [{"label": f"batch {b}", "batch": b} for b in data.get("batch_sizes", [])])
    data.setdefault("binding", "inputs passed by position")
    weights = dict(data.get("weights") or {})
    weights.setdefault("initialised_by", "pack" if weights.get("random") else "weights file")
    data["weights"] = weights
    for check in [c for v in (data.get("validation") or {}).values() for c in v.get("checks", [])]:
        check.setdefault("case", f"batch {check.get('batch')}")
    data["pack_report"] = VERSION


__all__ = [
    "FILE",
    "VERSION",
    "BuildReport",
    "FormatRecord",
    "InputRecord",
    "OutputRecord",
    "SampleRecord",
    "TensorRecord",
    "migrate",
    "plain",
    "sha256_file",
]
