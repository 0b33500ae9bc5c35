"""Every local target serves the file the report names: a build with a kept int8-dynamic variant (`pack optimize` on
a copy of the session's tiny build) deployed to Triton, TorchServe and FastAPI (one real server each, shared by the
module). Each deploy result has the one shape (packager/schemas/deploy.schema.json) and says `served_file`: the
variant's file. Each server's answer to the build's sample equals what that file gives in-process, through the
gate's comparison at float-noise tolerances, and differs from what the base model.onnx gives (int8 outputs differ
from float32 ones far beyond float noise), so a target that served model.onnx fails here. `pack status` names the
same url and infer_url."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager.export import runner_for
from packager.registry import Tolerance
from packager.report.build_report import BuildReport
from packager.report.cases import Case
from packager.report.samples import load_sample
from packager.report.validate import first_failure, validate_model_outputs
from packager.targets.result import problems
from tests.helpers.cli import pack_json, run_pack
from tests.helpers.served import v2_arrays
from tests.helpers.torchserve import copy_build

pytestmark = pytest.mark.server

TARGETS = ["triton", "torchserve", "fastapi"]
NOISE = Tolerance(atol=1e-6, rtol=1e-5)  # one file run twice: float noise at most


@pytest.fixture(scope="module")
def variant_store(built: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store with a copy of tiny that serves its kept int8-dynamic variant; (store, the variant's file)."""
    store = copy_build(built("tiny"), tmp_path_factory.mktemp("served") / "store")
    args = ("--variants", "int8-dynamic", "--min-speedup", "0.01", "--serve-variant", "int8-dynamic")
    out = pack_json("optimize", "tiny", *args, "--store", str(store))
    [variant] = [r["file"] for r in out["results"] if r["kind"] == "int8-dynamic" and r["status"] == "kept"]
    assert out["served"] == "int8-dynamic" and variant != "model.onnx"
    return store, variant


@pytest.fixture(scope="module")
def deployed(variant_store: tuple[Path, str]) -> Iterator[Callable[[str], dict[str, Any]]]:
    """deployed(target) -> the `pack deploy --json` result of the variant build on that target (one server per target
    for the whole module, each stopped at the end)."""
    store, _ = variant_store
    docs: dict[str, dict[str, Any]] = {}

    def get(target: str) -> dict[str, Any]:
        if target == "torchserve" and not shutil.which("java"):
            pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
        if target == "triton":
            from tests.helpers.triton import ensure_tritonserver

            ensure_tritonserver()
        if target not in docs:
            docs[target] = pack_json("deploy", "tiny", "--target", target, "--store", str(store), timeout=300)
        return docs[target]

    try:
        yield get
    finally:
        for target in docs:
            run_pack("stop", "--target", target, "--store", str(store))


def _served_answer(doc: dict[str, Any], store: Path) -> dict[str, Any]:
    """The server's answer to the deploy's own v2 request (the build's sample) at the result's infer_url."""
    headers = {"Content-Type": "application/json"}
    if doc["target"] == "torchserve":
        key = json.loads(Path(doc["token_file"]).read_text())["inference"]["key"]
        headers["Authorization"] = f"Bearer {key}"
    body = (store / ".requests" / doc["target"] / "tiny.v1.json").read_bytes()
    request = urllib.request.Request(doc["infer_url"], data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=60) as answer:
        loaded: dict[str, Any] = json.loads(answer.read())
        return loaded


def _agrees(served: list[np.ndarray], inputs: list[np.ndarray], expected: list[np.ndarray], names: list[str]) -> bool:
    """The gate's comparison of what the server answered with what a file gives in-process, at float-noise tolerances."""
    case = Case("the build's sample, in-process", inputs[0].shape[0], inputs, expected)
    return first_failure(validate_model_outputs(lambda _: served, [case], names, [NOISE] * len(names))) is None


@pytest.mark.parametrize("target", TARGETS)
def test_the_deploy_says_it_serves_the_variant(deployed: Callable[[str], dict[str, Any]], variant_store, target: str) -> None:
    doc = deployed(target)
    assert problems(doc) == [], problems(doc)
    assert doc["target"] == target and doc["format"] == "onnx" and doc["served_file"] == variant_store[1]
    assert doc["infer_url"].startswith(doc["url"] + "/v2/models/tiny/") and doc["smoke_test"]["passed"]
    assert variant_store[1] in doc["summary"]


@pytest.mark.parametrize("target", TARGETS)
def test_the_served_answer_is_the_variants_not_the_base_models(
    deployed: Callable[[str], dict[str, Any]], variant_store: tuple[Path, str], target: str
) -> None:
    store, variant = variant_store
    folder = store / "tiny" / "1"
    report = BuildReport.load(folder)
    doc = deployed(target)
    served = v2_arrays(_served_answer(doc, store), report.output_names)
    inputs = load_sample(folder, report).inputs
    own = runner_for("onnx", folder / doc["served_file"])(inputs)
    base = runner_for("onnx", folder / "model.onnx")(inputs)
    assert _agrees(own, inputs, base, report.output_names) is False  # the premise: int8 is told apart from float32
    assert _agrees(served, inputs, own, report.output_names), "the server does not answer what its served file gives"
    assert not _agrees(served, inputs, base, report.output_names), "the server answers what model.onnx gives"


@pytest.mark.parametrize("target", TARGETS)
def test_status_names_the_same_urls(deployed: Callable[[str], dict[str, Any]], variant_store, target: str) -> None:
    doc = deployed(target)
    status = pack_json("status", "--target", target, "--store", str(variant_store[0]))
    assert status["url"] == doc["url"]
    [entry] = [m for m in status["models"] if (m.get("name") or m.get("model")) == "tiny"]
    assert entry["infer_url"] == doc["infer_url"]
