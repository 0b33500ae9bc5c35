"""Every target serves the file the report names (`report.formats.served`, the one place it is decided), and every deploy
result has one shape (packager/schemas/deploy.schema.json): each target's result builder, run in-process on a build
that serves a kept variant, with fakes only for the server it would talk to. The real servers:
tests/integration/test_served_file.py."""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from packager.report.build_report import BuildReport
from packager.report.formats import Served, served
from packager.targets import get_target
from packager.targets.result import REQUIRED, deploy_result, problems
from tests.helpers.cli import invoke
from tests.helpers.reports import make_report
from tests.helpers.served import VARIANT, serve_a_variant

PACKAGE = Path(__file__).resolve().parents[2] / "packager"
SMOKE = {"passed": True, "seconds": 0.01, "outputs": [{"output": "logits", "passed": True, "max_abs_error": 1e-3}]}


@pytest.fixture
def variant_build(tiny_store: Path) -> Path:
    """tiny_store's build, serving a kept int8-dynamic variant whose bytes differ from model.onnx."""
    folder = tiny_store / "tiny" / "1"
    serve_a_variant(folder)
    return folder


# ---------------------------------------------------------------- what is served


def test_the_served_file_is_the_one_the_report_names() -> None:
    section = {"served": "int8-dynamic", "results": [{"kind": "int8-dynamic", "status": "kept", "file": VARIANT}]}
    variant = make_report(variants=section, artifacts={"onnx": "model.onnx", "torchscript": "model.pt"})
    plain = make_report(artifacts={"onnx": "model.onnx", "torchscript": "model.pt"})
    assert served(variant) == Served("onnx", VARIANT)
    assert served(variant, "onnx") == Served("onnx", VARIANT)
    assert served(variant, "torchscript") == Served("torchscript", "model.pt")  # variants are ONNX
    assert served(plain) == Served("onnx", "model.onnx")
    assert served(plain, supported=("torchscript",)) == Served("torchscript", "model.pt")


def test_a_format_the_build_lacks_is_one_line() -> None:
    from packager.errors import UsageError

    with pytest.raises(UsageError, match="the build has no pt2 export"):
        served(make_report(), "pt2")


def _calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("served_file", "served_format"):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {name}()")
    return found


def test_nothing_but_served_picks_a_served_file() -> None:
    """`BuildReport.served_file` and `served_format` are called in `report.formats.served` alone: a target, bench or
    any other module asks it, so no two of them can serve different files of one build."""
    calls = [c for p in sorted(PACKAGE.rglob("*.py")) for c in _calls(p)]
    assert calls and all(c.startswith("packager/report/formats.py:") for c in calls), calls


def test_the_fastapi_model_folder_holds_the_served_file(variant_build: Path, tmp_path: Path) -> None:
    from packager.targets.fastapi.deploy import model_entry

    report = BuildReport.load(variant_build)
    entry = model_entry(variant_build, report, served(report), tmp_path / "m")
    assert (tmp_path / "m" / "model.onnx").read_bytes() == (variant_build / VARIANT).read_bytes()
    assert (variant_build / VARIANT).read_bytes() != (variant_build / "model.onnx").read_bytes()
    assert entry["served_file"] == VARIANT and entry["sha256"] == report.sha256[VARIANT]


@pytest.mark.parametrize("previous, already", [(VARIANT, True), ("model.onnx", False)])
def test_fastapi_redeploys_when_the_served_file_changed(variant_build: Path, previous: str, already: bool) -> None:
    """The same version serving another file (a variant chosen since) is staged again, not kept as it was."""
    from packager.targets.fastapi.deploy import FastAPISteps
    from packager.targets.fastapi.target import FastAPIOptions

    report = BuildReport.load(variant_build)
    steps = FastAPISteps(variant_build, report, FastAPIOptions(store=variant_build.parents[1]))
    steps.prepare()
    steps.previous = [
        {"name": "tiny", "version": "1", "format": "onnx", "served_file": previous, "sha256": report.sha256[previous]}
    ]
    steps.observe()
    assert steps.already is already and steps.replaced == (None if already else "1")


def test_bench_runs_the_served_file_in_process(variant_build: Path) -> None:
    from packager.bench.inprocess import served_onnx

    assert served_onnx(BuildReport.load(variant_build)) == VARIANT


def test_the_torchserve_archive_packs_the_variant_and_checks_it(variant_build: Path) -> None:
    """`pack archive` reads the variant it packs, so it checks the variant's digest first (exit 3 when it changed)."""
    store = str(variant_build.parents[1])
    invoke("archive", "tiny", "--force", "--store", store, "--json").json()
    with zipfile.ZipFile(variant_build / "torchserve" / "tiny.mar") as mar:
        assert mar.read("model.onnx") == (variant_build / VARIANT).read_bytes()
    (variant_build / VARIANT).write_bytes((variant_build / VARIANT).read_bytes() + b"\0")
    line = invoke("archive", "tiny", "--force", "--store", store).error(3)
    assert VARIANT in line, line


def test_the_triton_repository_serves_the_variant(variant_build: Path) -> None:
    store = variant_build.parents[1]
    doc = invoke("repo", "tiny", "--store", str(store), "--json").json()
    assert doc["served_file"] == VARIANT and doc["format"] == "onnx"
    assert (store / "triton" / "tiny" / "1" / "model.onnx").read_bytes() == (variant_build / VARIANT).read_bytes()


# ---------------------------------------------------------------- one result shape, each target's builder


def _check(doc: dict[str, Any], target: str) -> None:
    assert problems(doc) == [], problems(doc)
    assert list(doc)[: len(REQUIRED) - 1] == [k for k in REQUIRED if k != "summary"] and list(doc)[-1] == "summary"
    assert doc["target"] == target and doc["model"] == "tiny" and doc["version"] == "1"
    assert doc["format"] == "onnx" and doc["served_file"] == VARIANT
    if doc["url"] is not None:
        assert doc["infer_url"].startswith(doc["url"] + "/v2/models/tiny/") and doc["infer_url"] in doc["v2_curl"]


def test_the_triton_result(variant_build: Path) -> None:
    from packager.targets.triton.deploy import TritonSteps

    target = get_target("triton")
    steps = TritonSteps(variant_build, BuildReport.load(variant_build), target.Options(store=variant_build.parents[1]))
    with steps.stack:
        steps.prepare()  # the real repository entries, checked offline
        steps.client = cast(Any, SimpleNamespace(url="http://127.0.0.1:8000"))
        ports = {"host": "127.0.0.1", "grpc_port": 8001, "metrics_port": 8002}
        steps.state = cast(Any, SimpleNamespace(pid=41, log="/s/server.log", repository="/s/repo", backends=["python"], **ports))
        steps.launched = True
        doc = steps.result({**SMOKE, "latency_ms": {"median": 1.0}})
    _check(doc, "triton")
    assert doc["infer_url"] == "http://127.0.0.1:8000/v2/models/tiny/versions/1/infer" == doc["serving_infer_url"]
    assert doc["server"] == {"launched": True, "pid": 41, "log": "/s/server.log", "repository": "/s/repo", "backends": ["python"]}
    assert doc["grpc_url"] == "127.0.0.1:8001" and doc["metrics_url"] == "http://127.0.0.1:8002/metrics"


def test_the_torchserve_result(variant_build: Path) -> None:
    from packager.targets.torchserve.deploy import TorchServeSteps

    target = get_target("torchserve")
    steps = TorchServeSteps(variant_build, BuildReport.load(variant_build), target.Options(store=variant_build.parents[1]))
    steps.prepare()
    steps._conn = cast(Any, SimpleNamespace(  # the connection a real deploy makes, faked
        inference=SimpleNamespace(base_url="http://127.0.0.1:8080/"),
        management=SimpleNamespace(
            base_url="http://127.0.0.1:8081", describe=lambda n, v: [{"batchSize": 4, "maxBatchDelay": 20, "workers": [{}]}]
        ),
        token_file="/s/key_file.json",
        local=SimpleNamespace(
                state=lambda: {"pid": 42, "metrics_url": "http://127.0.0.1:8082"}, log_path=Path("/s/logs/ts_log.log")
            ),
    ))  # fmt: skip
    steps.launched, steps.already, steps.previous_default = False, False, None
    doc = steps.result(SMOKE)
    _check(doc, "torchserve")
    assert doc["url"] == "http://127.0.0.1:8080" and doc["infer_url"] == "http://127.0.0.1:8080/v2/models/tiny/infer"
    assert doc["predictions_url"] == "http://127.0.0.1:8080/predictions/tiny" and doc["management_url"].endswith(":8081")
    assert doc["server"] == {"launched": False, "pid": 42, "log": "/s/logs/ts_log.log"} and doc["workers"] == 1
    assert doc["metrics_url"] == "http://127.0.0.1:8082/metrics"


def test_the_fastapi_result(variant_build: Path) -> None:
    from packager.targets.fastapi.deploy import FastAPISteps

    target = get_target("fastapi")
    steps = FastAPISteps(variant_build, BuildReport.load(variant_build), target.Options(store=variant_build.parents[1]))
    steps.prepare()
    steps.started = {"url": "http://127.0.0.1:9000", "pid": 43}
    steps.client = cast(
        Any, SimpleNamespace(models=lambda: [{"name": "tiny", "placement": {"provider": "CPUExecutionProvider"}}])
    )
    steps.launched, steps.workers, steps.replaced = True, 1, None
    doc = steps.result(SMOKE)
    _check(doc, "fastapi")
    assert doc["infer_url"] == "http://127.0.0.1:9000/v2/models/tiny/versions/1/infer"
    assert doc["predict_url"] == "http://127.0.0.1:9000/predict/tiny" and doc["server"]["pid"] == 43


@pytest.mark.parametrize("runtime, protocol", [("triton", "v2"), ("torchserve", "v1"), ("torchserve", "v2")])
def test_the_kserve_result_and_storage(variant_build: Path, runtime: str, protocol: str) -> None:
    store = variant_build.parents[1]
    args = ("--runtime", runtime, "--protocol", protocol, "--storage-uri", "s3://bucket/tiny")
    doc = invoke("deploy", "tiny", "--target", "kserve", "--store", str(store), "--json", *args).json()
    _check(doc, "kserve")
    assert doc["url"] is doc["infer_url"] is doc["v2_curl"] is doc["smoke_test"] is None
    assert doc["server"] == {"launched": False, "pid": None, "log": None} and "write_s" in doc["timings"]
    path = "/v2/models/tiny/infer" if protocol == "v2" else "/v1/models/tiny:predict"
    assert doc["infer_path"] == path and f"http://tiny-predictor.<namespace>.svc.cluster.local{path}" in doc["url_reason"]
    storage = Path(doc["storage"])
    if runtime == "triton":
        served = (storage / "tiny" / "1" / "model.onnx").read_bytes()
    else:
        with zipfile.ZipFile(storage / "model-store" / "tiny.mar") as mar:
            served = mar.read("model.onnx")
    assert served == (variant_build / VARIANT).read_bytes() != (variant_build / "model.onnx").read_bytes()


def test_kserve_triton_refuses_a_format_no_native_backend_loads(tiny_store: Path) -> None:
    """--format is honoured (it was ignored: ONNX was written whatever was asked); a format no native backend loads is
    one line, exit 2, and nothing is written. (A TorchScript export served on libtorch:
    tests/integration/test_kserve_apply.py.)"""
    args = ("--target", "kserve", "--runtime", "triton", "--format", "pt2", "--storage-uri", "s3://bucket/tiny")
    assert "format 'pt2' cannot be served" in invoke("deploy", "tiny", "--store", str(tiny_store), "--json", *args).error(2)
    assert not [p for p in (tiny_store / "kserve").rglob("*") if not p.is_dir()]


# ---------------------------------------------------------------- the schema refuses what is not the shape


def _good() -> dict[str, Any]:
    report = make_report(name="tiny")
    return deploy_result(
        "fastapi",
        report,
        Served("onnx", "model.onnx"),
        url="http://127.0.0.1:9000",
        infer_url="http://127.0.0.1:9000/v2/models/tiny/versions/1/infer",
        v2_curl="curl ...",
        smoke_test=SMOKE,
        timings={},
        server={"launched": True, "pid": 1, "log": "/s/server.log"},
        summary="deployed",
    )


@pytest.mark.parametrize(
    "change, where",
    [
        (lambda d: d.pop("served_file"), "'served_file' is a required property"),
        (lambda d: d.update(served_file="/etc/passwd"), "served_file"),
        (lambda d: d.update(inference_url=d["url"]), "inference_url: "),  # the ambiguous key of old
        (lambda d: d.update(launched_server=True), "launched_server: "),
        (lambda d: d.update(infer_url="http://127.0.0.1:9000/predict/tiny"), "infer_url"),
        (lambda d: d.update(url="http://127.0.0.1:9000/"), "url"),  # a base URL has no trailing slash
        (lambda d: d.update(url=None), "'url_reason' is a required property"),
        (lambda d: d.update(smoke_test={"passed": False}), "smoke_test"),
        (lambda d: d["server"].pop("pid"), "'pid' is a required property"),
        (lambda d: d.update(version="v1"), "version"),
    ],
)
def test_the_schema_refuses_a_result_of_another_shape(change: Any, where: str) -> None:
    doc = _good()
    assert problems(doc) == []
    change(doc)
    assert any(where in p for p in problems(doc)), problems(doc)


def test_a_target_cannot_redefine_a_common_key() -> None:
    with pytest.raises(ValueError, match="redefine common keys"):
        deploy_result(
            "x", make_report(), Served("onnx", "model.onnx"), url=None, infer_url=None, v2_curl=None, smoke_test=None,
            timings={}, server={}, summary="", url_reason="r", served_file="other.onnx",
        )  # fmt: skip
