"""The contract between commands, as a matrix: every kind of build `pack build` calls built, through every command and
every target. A cell is one test named `test_<command>[<kind>]`; it either works (and a served answer equals what the
served file gives in-process, through the gate's comparison) or is refused with a reason `pack build` already stated.

Kinds: one tensor out (tiny), dict outputs, integer inputs with a range and a dynamic length, a build with a failed
optional format (pt2 of an LSTM tagger), a build serving a kept int8 variant, a signed build, a detector (yolov8n),
and torchvision's SSDlite, which ships TorchScript only and calls torchvision's operators.
The builds are made once into one store; each local server (Triton, TorchServe, FastAPI) is launched once by the
first deploy into that store and serves every kind; commands that rewrite a build work on a private copy.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT
from tests.helpers.cli import pack_json, run_pack
from tests.helpers.keys import KeyPair, ec_pair
from tests.helpers.oip import v2_infer
from tests.helpers.triton import ensure_tritonserver, link_build

pytestmark = [pytest.mark.server, pytest.mark.slow]

MODELS = ROOT / "tests" / "integration" / "contract_models.py"
TOKENS = "tokens:2x12:int64:dyn=0,1:range=0,99"


@dataclass(frozen=True)
class Kind:
    """How one kind of build is made: a session build reused (`session`), or `pack build` arguments."""

    name: str  # the model's name in the matrix store
    session: str | None = None
    args: tuple[str, ...] = ()
    signed: bool = False
    notes: dict[str, str] = field(default_factory=dict)


KINDS = {
    "one_tensor": Kind("tiny", session="tiny"),
    "dict_outputs": Kind("dict_head", args=(f"{MODELS}:dict_head", "--input", "x:2x16")),
    "int_inputs": Kind("tokens", args=(f"{MODELS}:token_classifier", "--input", TOKENS)),
    "failed_format": Kind("tagger", args=(f"{MODELS}:tagger", "--input", TOKENS)),
    "kept_variant": Kind(
        "mlp",
        args=(
            f"{MODELS}:mlp",
            "--input",
            "x:2x64",
            "--variants",
            "int8-dynamic",
            "--min-speedup",
            "0.01",
            "--serve-variant",
            "int8-dynamic",
        ),
    ),
    "signed": Kind("signed_tiny", args=("tiny",), signed=True),
    "detector": Kind("yolov8n", session="yolov8n"),
    "torchvision_detector": Kind("ssdlite", args=(f"{MODELS}:ssdlite", "--input", "images:1x3x320x320")),
}
SERVERS = ("triton", "torchserve", "fastapi")


@dataclass
class Matrix:
    store: Path
    key: KeyPair
    builds: dict[str, Path]
    deployed: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def build(self, kind: str) -> Path:
        return self.builds[kind]

    def report(self, kind: str) -> Any:
        from packager.report.build_report import BuildReport

        return BuildReport.load(self.builds[kind])

    def copy(self, kind: str, tmp: Path) -> Path:
        """A private store holding a copy of the kind's build (for commands that rewrite it)."""
        folder = self.builds[kind]
        dest = tmp / "store" / folder.parent.name / folder.name
        shutil.copytree(folder, dest)
        return tmp / "store"


@pytest.fixture(scope="module")
def matrix(built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """Every kind built into one store; the servers its deploys launch are stopped at the end, whatever happened."""
    store = tmp_path_factory.mktemp("contract-store")
    key = ec_pair(tmp_path_factory.mktemp("contract-keys"), "release")
    builds: dict[str, Path] = {}
    for label, kind in KINDS.items():
        if kind.session:
            builds[label] = link_build(built(kind.session), store)
            continue
        sign = ("--sign-key", str(key.private)) if kind.signed else ()
        doc = pack_json("build", *kind.args, "--name", kind.name, "--store", str(store), "--iterations", "0", *sign)
        builds[label] = Path(doc["path"])
    ensure_tritonserver()
    try:
        yield Matrix(store, key, builds)
    finally:
        for target in SERVERS:
            run_pack("stop", "--target", target, "--store", str(store))


def test_the_kinds_are_what_they_stand_for(matrix: Matrix) -> None:
    """Each kind really has the property it is in the matrix for (a kind that stopped being one would hide a cell)."""
    reports = {k: matrix.report(k) for k in KINDS}
    assert reports["one_tensor"].calling["returns"] == "tensor"
    assert reports["dict_outputs"].output_names == ["logits", "probs"] and reports["dict_outputs"].calling["returns"] == "tuple"
    assert reports["int_inputs"].inputs[0].dtype == "int64" and reports["int_inputs"].inputs[0].range == [0, 99]
    failed = reports["failed_format"].formats["pt2"]
    assert failed.status == "failed" and failed.file is None and "pt2" not in reports["failed_format"].artifacts
    assert not (matrix.build("failed_format") / "model.pt2").exists()  # nothing the gate refused stays in the build
    assert reports["kept_variant"].served_file("onnx") == "variants/int8-dynamic/model.onnx"
    assert (matrix.build("signed") / "model.sig").is_file()
    assert reports["detector"].task == "object-detection"
    assert list(reports["torchvision_detector"].artifacts) == ["torchscript"]  # onnx and pt2 failed: served as model.pt


# ---------------------------------------------------------------- offline commands


@pytest.mark.parametrize("kind", KINDS)
def test_verify(matrix: Matrix, kind: str) -> None:
    doc = pack_json("verify", str(matrix.build(kind)), "--parity")
    assert doc["passed"] and doc["findings"] == [], doc
    if KINDS[kind].signed:
        signed = pack_json("verify", str(matrix.build(kind)), "--signature", "--public-key", str(matrix.key.public))
        assert signed["passed"], signed


@pytest.mark.parametrize("kind", KINDS)
def test_inspect(matrix: Matrix, kind: str) -> None:
    doc = pack_json("inspect", str(matrix.build(kind)))
    report = matrix.report(kind)
    text = json.dumps(doc)
    assert report.name in text
    for fmt, record in report.formats.items():
        assert fmt in text and record.status in text, (fmt, doc)


@pytest.mark.parametrize("kind", KINDS)
def test_archive(matrix: Matrix, kind: str, tmp_path: Path) -> None:
    store = matrix.copy(kind, tmp_path)
    name = KINDS[kind].name
    doc = pack_json("archive", name, "--store", str(store), "--force")
    build = store / name / matrix.build(kind).name
    report = matrix.report(kind)
    assert doc["format"] in report.artifacts
    assert pack_json("verify", str(build))["passed"]
    mar = build / doc["mar"]
    _member_digest_is(mar, report.served_file(doc["format"]), build)


@pytest.mark.parametrize("kind", KINDS)
def test_repo(matrix: Matrix, kind: str, tmp_path: Path) -> None:
    store = matrix.copy(kind, tmp_path)
    name = KINDS[kind].name
    doc = pack_json("repo", name, "--store", str(store))
    assert doc["check"]["ok"], doc
    assert pack_json("check-repo", str(store / "triton"))["ok"]
    report = matrix.report(kind)
    served = matrix.build(kind) / str(report.served_file(doc["format"]))
    copied = store / "triton" / doc["serving_model"] / report.version
    if doc["serving_model"] != name:  # a detector's ensemble: the model itself is its own entry
        copied = store / "triton" / name / report.version
    assert any(_sha(p) == _sha(served) for p in copied.iterdir() if p.is_file()), (served, list(copied.iterdir()))


@pytest.mark.parametrize("kind", KINDS)
def test_sign(matrix: Matrix, kind: str, tmp_path: Path) -> None:
    store = matrix.copy(kind, tmp_path)
    name = KINDS[kind].name
    build = store / name / matrix.build(kind).name
    pack_json("sign", name, "--store", str(store), "--key", str(matrix.key.private))
    assert pack_json("verify", str(build), "--signature", "--public-key", str(matrix.key.public))["passed"]


@pytest.mark.parametrize("kind", KINDS)
def test_bench(matrix: Matrix, kind: str) -> None:
    """The in-process rows of the served runtime; a build without ONNX (the runtime bench compares everything with) is
    refused in one line with the reason the build recorded."""
    from tests.helpers.cli import one_error_line

    name = KINDS[kind].name
    args = ("bench", name, "--store", str(matrix.store), "--targets", "inprocess", "--requests", "4", "--concurrency", "1")
    report = matrix.report(kind)
    if "onnx" not in report.artifacts:
        line = one_error_line(2, *_code_and_stderr(run_pack(*args)))
        assert "no onnx export" in line and report.formats["onnx"].reason[:60] in line, line
        return
    doc = pack_json(*args)
    assert doc["rows"], doc


@pytest.mark.parametrize("kind", KINDS)
def test_kserve(matrix: Matrix, kind: str, tmp_path: Path) -> None:
    name = KINDS[kind].name
    report = matrix.report(kind)
    for runtime in ("triton", "torchserve"):
        doc = pack_json(
            "deploy",
            name,
            "--target",
            "kserve",
            "--runtime",
            runtime,
            "--storage-uri",
            f"s3://models/{name}/{report.version}",
            "--store",
            str(matrix.copy(kind, tmp_path / runtime)),
        )
        checked = run_pack("check-manifest", doc["manifest"])
        assert checked.returncode == 0, checked.stderr
        from packager.targets.result import problems

        assert problems(doc) == [] and doc["served_file"] == report.served_file(doc["format"]), doc
        storage = Path(doc["storage"])
        served = matrix.build(kind) / str(report.served_file(doc.get("format") or "onnx"))
        if runtime == "triton":
            assert any(_sha(p) == _sha(served) for p in storage.rglob("*") if p.is_file()), (runtime, served)


# ---------------------------------------------------------------- servers


@pytest.mark.parametrize("target", SERVERS)
@pytest.mark.parametrize("kind", KINDS)
def test_deploy(matrix: Matrix, kind: str, target: str) -> None:
    """Deployed, the served file is the one the report names, and a v2 answer to the build's sample equals what that
    file gives in-process (the gate's comparison, the build's own tolerances: a base file served in place of an int8
    variant fails it)."""
    from packager.targets.result import problems

    name = KINDS[kind].name
    signed = ("--require-signature", "--public-key", str(matrix.key.public)) if KINDS[kind].signed else ()
    doc = pack_json("deploy", name, "--target", target, "--store", str(matrix.store), *signed)
    report = matrix.report(kind)
    assert problems(doc) == [], problems(doc)  # the one deploy result shape
    assert doc["smoke_test"]["passed"], doc
    assert doc["served_file"] == report.served_file(doc["format"]), doc
    if report.task == "object-detection" and target != "triton":
        return  # the detector's endpoint answers detections, not the raw tensor (the smoke test compares those)
    _answers_like_its_file(matrix.build(kind), report, doc)


@pytest.mark.parametrize("target", [*SERVERS, "kserve"])
def test_a_failed_format_is_refused_with_the_reason_the_build_stated(matrix: Matrix, target: str, tmp_path: Path) -> None:
    from tests.helpers.cli import one_error_line

    report = matrix.report("failed_format")
    kserve = ("--storage-uri", "s3://models/tagger/1", "--runtime", "torchserve") if target == "kserve" else ()
    store = matrix.copy("failed_format", tmp_path)  # nothing is launched: the refusal comes before any server
    proc = run_pack("deploy", "tagger", "--target", target, "--format", "pt2", "--store", str(store), *kserve)
    line = one_error_line(2, proc.returncode, proc.stderr)
    assert "no pt2 export" in line and report.formats["pt2"].reason[:60] in line, line
    assert not (store / ".servers").exists()


def _answers_like_its_file(build: Path, report: Any, doc: dict[str, Any]) -> None:
    from packager.export import runner_for
    from packager.report.samples import load_sample
    from packager.report.validate import first_failure

    sample = load_sample(build, report)
    headers = {}
    if doc.get("token_file"):
        headers["Authorization"] = "Bearer " + json.loads(Path(doc["token_file"]).read_text())["inference"]["key"]
    served = v2_infer(doc["infer_url"], dict(zip(report.input_names, sample.inputs, strict=True)), headers)
    expected = runner_for(doc["format"], build / doc["served_file"], "cpu")(sample.inputs)
    in_process = replace(sample, case=replace(sample.case, outputs=expected))
    assert sorted(served) == sorted(report.output_names), served.keys()
    bad = first_failure(in_process.check_outputs([served[n] for n in report.output_names]))
    assert bad is None, bad


def _code_and_stderr(proc: Any) -> tuple[int, str]:
    return proc.returncode, proc.stderr


def _sha(path: Path) -> str:
    from packager.report.build_report import sha256_file

    return sha256_file(path)


def _member_digest_is(mar: Path, rel: str | None, build: Path) -> None:
    """The archive holds the served file's bytes (under whatever name the archive gives it)."""
    import hashlib
    import zipfile

    assert rel is not None
    want = _sha(build / rel)
    with zipfile.ZipFile(mar) as zf:
        digests = [hashlib.sha256(zf.read(i)).hexdigest() for i in zf.infolist() if not i.is_dir()]
    assert want in digests, (rel, mar)
