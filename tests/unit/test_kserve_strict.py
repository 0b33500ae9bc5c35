"""Strict KServe manifests: an unknown field anywhere is refused with its path (as the API server's strict field
validation does), maps and preserve-unknown-fields nodes still take any key, every manifest pack writes passes, and
`pack check-manifest` reports files one line per problem (exit 3), with --json, multi-document files and clean errors
for files that are not manifests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from packager.targets import STORAGE_LAYOUT, capable
from packager.targets.kserve.manifest import KServeOptions, inference_service, validate
from packager.targets.kserve.schemas import close, raw_schema
from packager.targets.kserve.target import KServeDeployOptions
from tests.helpers.cli import invoke
from tests.helpers.kserve import crd_schema
from tests.helpers.reports import make_report

REPORT = make_report(name="bert_base", version="3")
STORAGE = {"served_model": "bert_base", "digest": "0" * 64}
RUNTIMES = {name: layout.kserve for name, layout in capable(STORAGE_LAYOUT).items()}  # what KServe can run


def _manifest(**extra: Any) -> dict[str, Any]:
    opts = KServeDeployOptions(store=Path("."), storage_uri="s3://b/bert", **extra)
    return inference_service(REPORT, KServeOptions.from_deploy(opts, REPORT, RUNTIMES), STORAGE)


def _at(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split(".") if path else []:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


CONTAINER = {"name": "kserve-container", "image": "nvcr.io/nvidia/tritonserver:24.08-py3"}


@pytest.mark.parametrize(
    "where",
    [
        "",  # the top level
        "metadata",  # ObjectMeta: the CRD leaves it a bare object
        "spec",
        "spec.predictor",
        "spec.predictor.model",
        "spec.predictor.model.modelFormat",
        "spec.predictor.model.resources",
        "spec.predictor.model.readinessProbe.httpGet",
        "spec.predictor.containers.[0]",
        "spec.predictor.containers.[0].resources",
    ],
)
def test_a_misspelled_field_anywhere_is_refused_with_its_path(where: str) -> None:
    doc = _manifest()
    doc["spec"]["predictor"]["containers"] = [copy.deepcopy(CONTAINER) | {"resources": {"limits": {"cpu": "1"}}}]
    assert validate(doc) == []
    _at(doc, where)["storageUrl"] = "s3://typo"
    shown = where.replace(".[", "[")
    assert validate(doc) == [f"{shown + '.' if shown else ''}storageUrl: unknown field"]
    jsonschema.Draft7Validator(crd_schema()).validate(doc)  # the published schema alone lets the typo through


def test_every_misspelling_is_listed_once() -> None:
    doc = _manifest()
    doc["spec"]["predictor"]["model"].update({"storageUrl": "x", "runtimee": "y"})
    doc["kindd"] = "InferenceService"
    assert validate(doc) == [
        "kindd: unknown field",
        "spec.predictor.model.storageUrl: unknown field",
        "spec.predictor.model.runtimee: unknown field",
    ]


def test_maps_and_preserve_unknown_fields_nodes_take_any_key() -> None:
    doc = _manifest()
    doc["metadata"]["labels"]["team.example.com/any-key"] = "x"
    doc["metadata"]["annotations"]["whatever/you-like"] = "y"
    doc["spec"]["predictor"]["nodeSelector"] = {"any/node-label": "z"}  # a map of strings
    doc["spec"]["predictor"]["model"]["resources"]["limits"]["example.com/fpga"] = "1"  # a map of quantities
    doc["status"] = {"anything": {"deeply": {"nested": 1}}, "url": "http://x"}  # x-kubernetes-preserve-unknown-fields
    assert validate(doc) == []
    doc["metadata"]["labels"]["n"] = 3  # a map still checks its values
    doc["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = "one cpu"  # and a quantity its pattern
    problems = validate(doc)
    assert [p.split(":")[0] for p in problems] == ["metadata.labels.n", "spec.predictor.model.resources.limits.cpu"]


def test_closing_is_a_load_time_transform() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "m": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "integer"}}}},
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"c": {"type": "object"}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"d": {"type": "string"}}}},
        },
    }
    closed = close(schema)
    assert closed["additionalProperties"] is False and closed["properties"]["a"]["additionalProperties"] is False
    assert closed["properties"]["m"]["additionalProperties"]["additionalProperties"] is False  # a map's values close
    assert "additionalProperties" not in closed["properties"]["open"]
    assert closed["properties"]["list"]["items"]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # the input is not changed
    shipped = json.dumps(raw_schema("InferenceService"))
    assert '"additionalProperties": false' not in shipped  # the shipped file stays KServe's own


@pytest.mark.parametrize("runtime, protocol", [("triton", "v2"), ("torchserve", "v1"), ("torchserve", "v2")])
@pytest.mark.parametrize("mode", ["Standard", "Knative", "Serverless", "RawDeployment"])
@pytest.mark.parametrize("gpus", [0, 2])
def test_every_manifest_pack_writes_passes(runtime: str, protocol: str, mode: str, gpus: int) -> None:
    doc = _manifest(runtime=runtime, protocol=protocol, deployment_mode=mode, gpus=gpus)
    assert validate(doc) == []
    model = doc["spec"]["predictor"]["model"]
    assert model["runtime"] == {"triton": "kserve-tritonserver", "torchserve": "kserve-torchserve"}[runtime]
    written = {"Standard": "Standard", "RawDeployment": "Standard", "Knative": "Knative", "Serverless": "Knative"}[mode]
    assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == written
    assert ("nvidia.com/gpu" in model["resources"]["limits"]) == bool(gpus)


def test_a_pinned_model_car_uri_passes() -> None:
    doc = _manifest()
    doc["spec"]["predictor"]["model"]["storageUri"] = "oci://127.0.0.1:5000/bert@sha256:" + "a" * 64
    assert validate(doc) == []


SERVING_RUNTIME: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ServingRuntime",
    "metadata": {"name": "my-triton"},
    "spec": {
        "supportedModelFormats": [{"name": "triton", "version": "2", "autoSelect": True}],
        "protocolVersions": ["v2"],
        "containers": [{**CONTAINER, "args": ["tritonserver", "--model-store=/mnt/models"]}],
    },
}


def _write(tmp_path: Path, *docs: Any, name: str = "m.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


def test_check_manifest_reads_every_kind_and_document(tmp_path: Path) -> None:
    cluster = copy.deepcopy(SERVING_RUNTIME) | {"kind": "ClusterServingRuntime"}
    doc = invoke("check-manifest", _write(tmp_path, _manifest(), SERVING_RUNTIME, cluster), "--json").json()
    assert doc["valid"] is True
    assert [(d["kind"], d["valid"]) for d in doc["documents"]] == [
        ("InferenceService", True),
        ("ServingRuntime", True),
        ("ClusterServingRuntime", True),
    ]
    broken = copy.deepcopy(SERVING_RUNTIME)
    broken["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    result = invoke("check-manifest", _write(tmp_path, _manifest(), broken))
    line = result.error(3)
    assert "document 2: spec.containers[0].imagePullPolicyy: unknown field" in line
    assert "document 2: spec.containers[0].imagePullPolicyy: unknown field" in result.stdout.splitlines()


def test_check_manifest_json_lists_the_problems(tmp_path: Path) -> None:
    doc = _manifest()
    doc["spec"]["predictor"]["model"]["storageUrl"] = "s3://typo"
    doc["metadata"]["nmae"] = "x"
    result = invoke("check-manifest", _write(tmp_path, doc), "--json")
    assert result.returncode == 3
    out = json.loads(result.stdout)
    assert out["valid"] is False
    assert out["documents"][0]["problems"] == [
        {"path": "metadata.nmae", "message": "unknown field"},
        {"path": "spec.predictor.model.storageUrl", "message": "unknown field"},
    ]
    assert result.error(3).startswith(f"error: {tmp_path / 'm.yaml'}: metadata.nmae: unknown field (and 1 more)")


def test_check_manifest_refuses_what_is_not_a_manifest(tmp_path: Path) -> None:
    def check(text: str) -> str:
        path = tmp_path / "x.yaml"
        path.write_text(text)
        return invoke("check-manifest", str(path)).error(3)

    assert "is not valid YAML at line 2" in check("a: [\n")
    assert "uses a YAML alias at line 2" in check("a: &x [1]\nb: *x\n")
    assert "holds no YAML document" in check("# nothing\n")
    assert "kind: 'Deployment' is not a kind pack checks" in check("apiVersion: apps/v1\nkind: Deployment\n")
    assert "(top): a manifest is a mapping, not list" in check("- 1\n")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    assert "is not UTF-8 text" in invoke("check-manifest", str(tmp_path / "bin.yaml")).error(3)
    assert "cannot read" in invoke("check-manifest", str(tmp_path / "missing.yaml")).error(2)


def test_check_manifest_passes_what_deploy_wrote(tiny_store: Path) -> None:
    for runtime in ("triton", "torchserve"):
        args = ("--target", "kserve", "--store", str(tiny_store), "--runtime", runtime, "--storage-uri", "s3://b/t")
        written = invoke("deploy", "tiny", *args, "--json").json()
        checked = invoke("check-manifest", written["manifest"])
        assert checked.returncode == 0, checked.stderr
        assert "InferenceService tiny: valid" in checked.stdout
