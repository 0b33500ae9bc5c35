"""KServe in-process: storage folders as the runtimes expect them, InferenceService manifests valid against the CRD
schema, options and names. (`--apply` through a stand-in kubectl: tests/integration/test_kserve_apply.py.)"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from packager.errors import UsageError
from packager.targets import STORAGE_LAYOUT, capable
from packager.targets.kserve.manifest import KServeOptions, inference_service, service_name, validate
from packager.targets.kserve.target import KServeDeployOptions
from tests.helpers.cli import invoke
from tests.helpers.kserve import crd_schema
from tests.helpers.reports import make_report


@pytest.fixture(scope="module")
def crd() -> jsonschema.Draft7Validator:
    """A validator of the CRD schema (jsonschema.validate() would check the 700 KB schema itself on every call)."""
    return jsonschema.Draft7Validator(crd_schema())


def _deploy(store: Path, *args: str) -> dict[str, Any]:
    return dict(invoke("deploy", "tiny", "--target", "kserve", "--store", str(store), "--json", *args).json())


def _manifest(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(yaml.safe_load(Path(doc["manifest"]).read_text()))


def test_torchserve_runtime_storage_and_manifest(tiny_store: Path, crd: jsonschema.Draft7Validator) -> None:
    doc = _deploy(
        tiny_store,
        "--runtime",
        "torchserve",
        "--storage-uri",
        "s3://bucket/models/tiny",
        "--gpus",
        "1",
        "--max-replicas",
        "4",
        "--deployment-mode",
        "Serverless",
    )
    folder = Path(doc["folder"])
    assert sorted(doc["files"]) == [
        "inferenceservice.yaml",
        "storage/config/config.properties",
        "storage/model-store/tiny.mar",
    ]
    lines = (folder / "storage/config/config.properties").read_text().splitlines()
    props = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert props["inference_address"] == "http://0.0.0.0:8085"
    assert props["model_store"] == "/mnt/models/model-store"
    snapshot = json.loads(props["model_snapshot"])
    entry = snapshot["models"]["tiny"]["1"]
    assert snapshot["modelCount"] == 1 and entry["marName"] == "tiny.mar" and entry["defaultVersion"] is True
    with zipfile.ZipFile(folder / "storage/model-store/tiny.mar") as zf:
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        assert manifest["model"]["modelName"] == "tiny" and manifest["model"]["serializedFile"] in zf.namelist()

    isvc = _manifest(doc)
    crd.validate(isvc)
    model = isvc["spec"]["predictor"]["model"]
    assert isvc["kind"] == "InferenceService" and isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert model["modelFormat"]["name"] == "pytorch" and model["protocolVersion"] == "v1"
    assert model["storageUri"] == "s3://bucket/models/tiny"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert model["readinessProbe"]["httpGet"]["path"] == "/v1/models/tiny"
    assert isvc["spec"]["predictor"]["maxReplicas"] == 4 and isvc["spec"]["predictor"]["scaleMetric"] == "concurrency"
    assert model["runtime"] == "kserve-torchserve"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"  # the older name, written anew
    assert validate(isvc) == []
    assert doc["next_steps"][0].startswith("aws s3 cp --recursive") and doc["next_steps"][1].startswith("kubectl apply -f")
    assert doc["applied"] is False


def test_triton_runtime_storage_is_a_checked_repository(tiny_store: Path, crd: jsonschema.Draft7Validator) -> None:
    doc = _deploy(tiny_store, "--storage-uri", "gs://bucket/tiny")  # triton and Standard are the defaults
    assert doc["runtime"] == "triton" and doc["deployment_mode"] == "Standard"
    folder = Path(doc["folder"])
    assert {"storage/tiny/config.pbtxt", "storage/tiny/1/model.onnx"} <= set(doc["files"])
    config = (folder / "storage/tiny/config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config
    assert invoke("check-repo", str(folder / "storage")).returncode == 0
    isvc = _manifest(doc)
    crd.validate(isvc)
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] == "v2"
    assert model["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert model["runtime"] == "kserve-tritonserver"
    assert "nvidia.com/gpu" not in model["resources"]["limits"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    predictor = isvc["spec"]["predictor"]
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("cpu", 80)  # the HPA scales on CPU utilisation
    assert validate(isvc) == []
    assert doc["next_steps"][0].startswith("gsutil -m cp -r")


def test_broken_manifests_fail_the_schema(tiny_store: Path, crd: jsonschema.Draft7Validator) -> None:
    isvc = _manifest(_deploy(tiny_store, "--storage-uri", "s3://b/t"))
    assert validate(isvc) == []
    broken = json.loads(json.dumps(isvc))
    broken["spec"]["predictor"]["minReplicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        crd.validate(broken)
    assert any("minReplicas" in p for p in validate(broken))
    broken = json.loads(json.dumps(isvc))
    broken["spec"]["predictor"]["scaleMetric"] = "gpu"
    assert any("scaleMetric" in p for p in validate(broken))
    broken = json.loads(json.dumps(isvc))
    del broken["spec"]["predictor"]["model"]["modelFormat"]["name"]
    assert any("'name' is a required property" in p for p in validate(broken))
    broken = json.loads(json.dumps(isvc))
    broken["metadata"]["name"] = "Tiny_Model"
    assert any("DNS-1035" in p for p in validate(broken))
    broken = json.loads(json.dumps(isvc))
    broken["apiVersion"] = "serving.kserve.io/v1alpha1"
    assert validate(broken) == ["apiVersion: 'serving.kserve.io/v1alpha1' is not serving.kserve.io/v1beta1"]
    broken["kind"] = "Service"
    assert [p.split(":")[0] for p in validate(broken)] == ["kind"]


def test_bad_options_are_one_line_errors(tiny_store: Path) -> None:
    def deploy(*args: str) -> str:
        return invoke("deploy", "tiny", "--target", "kserve", "--store", str(tiny_store), *args).error(2)

    assert "--storage-uri is required" in deploy()
    assert "no scheme" in deploy("--storage-uri", "bucket/x")
    assert "does not speak protocol v1" in deploy("--runtime", "triton", "--protocol", "v1", "--storage-uri", "s3://b/x")
    assert "not a valid range" in deploy("--storage-uri", "s3://b/x", "--min-replicas", "3", "--max-replicas", "2")
    assert "--gpus must be 0 or more" in deploy("--storage-uri", "s3://b/x", "--gpus", "-1")
    assert "--min-replicas 0 needs --deployment-mode Knative" in deploy("--storage-uri", "s3://b/x", "--min-replicas", "0")
    assert "--scale-target must be 1 or more" in deploy("--storage-uri", "s3://b/x", "--scale-target", "0")
    assert "does not name a registry host" in deploy("--storage-uri", "oci://tiny:1")
    assert "names a digest" in deploy("--storage-uri", "oci://127.0.0.1:5000/tiny@sha256:" + "0" * 64)
    assert "not a valid repository name" in deploy("--storage-uri", "oci://127.0.0.1:5000/Tiny")
    assert not (tiny_store / "kserve" / "tiny" / "1" / "triton").exists()


def test_model_names_become_dns_labels() -> None:
    assert service_name("mobilenet_v3_small") == "mobilenet-v3-small"
    assert service_name("9lives") == "m-9lives"
    assert service_name("Model.V2") == "model-v2"
    assert len(service_name("x" * 80)) == 45


REPORT = make_report(name="bert_base", version="3")
STORAGE = {"served_model": "bert_base", "digest": "0" * 64}
RUNTIMES = {name: layout.kserve for name, layout in capable(STORAGE_LAYOUT).items()}  # what KServe can run


def _options(**extra: Any) -> KServeOptions:
    return KServeOptions.from_deploy(KServeDeployOptions(store=Path("."), storage_uri="s3://b/bert/", **extra), REPORT, RUNTIMES)


@pytest.mark.parametrize(
    "extra, probe",
    [
        ({"runtime": "torchserve"}, "/v1/models/bert_base"),
        ({"runtime": "torchserve", "protocol": "v2"}, "/v2/models/bert_base/ready"),
        ({"runtime": "triton"}, "/v2/health/ready"),
    ],
)
def test_manifests_without_a_build_are_schema_valid(extra: dict[str, Any], probe: str, crd: jsonschema.Draft7Validator) -> None:
    options = _options(**extra, cpu="2", memory="4Gi", min_replicas=0, scale_target=4, deployment_mode="Knative")
    manifest = inference_service(REPORT, options, STORAGE)
    assert validate(manifest) == []
    crd.validate(manifest)
    predictor = manifest["spec"]["predictor"]
    assert predictor["model"]["readinessProbe"]["httpGet"] == {"path": probe, "port": 8080}
    assert predictor["model"]["storageUri"] == "s3://b/bert"  # trailing slash dropped
    assert predictor["model"]["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert (predictor["minReplicas"], predictor["scaleTarget"]) == (0, 4)
    meta = manifest["metadata"]
    assert meta["name"] == "bert-base" and meta["annotations"]["pack/storage-sha256"] == "0" * 64
    assert meta["labels"]["app.kubernetes.io/version"] == "3"


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown KServe runtime 'seldon'"):
        _options(runtime="seldon")
