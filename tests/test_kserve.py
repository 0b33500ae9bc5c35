"""KServe: storage folders as the runtimes expect them, and InferenceService manifests valid against the CRD schema."""

import json
import os
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import ROOT, run_pack

SHARED_SCHEMA = ROOT.parent / "shared" / "schemas" / "kserve-inferenceservice-v1beta1.schema.json"


@pytest.fixture(scope="module")
def schema():
    path = SHARED_SCHEMA if SHARED_SCHEMA.is_file() else ROOT / "packager" / "schemas" / SHARED_SCHEMA.name
    return json.loads(path.read_text())


@pytest.fixture
def store(built, tmp_path):
    import shutil

    shutil.copytree(built("tiny"), tmp_path / "tiny" / "1")
    return tmp_path


def _deploy(store, *args):
    proc = run_pack("deploy", "tiny", "--target", "kserve", "--store", str(store), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _manifest(doc):
    return yaml.safe_load(Path(doc["manifest"]).read_text())


def test_torchserve_runtime_storage_and_manifest(store, schema):
    doc = _deploy(store, "--runtime", "torchserve", "--storage-uri", "s3://bucket/models/tiny", "--gpus", "1", "--max-replicas", "4")
    folder = Path(doc["folder"])
    assert sorted(doc["files"]) == [
        "inferenceservice.yaml",
        "storage/config/config.properties",
        "storage/model-store/tiny.mar",
    ]
    props = dict(
        line.split("=", 1) for line in (folder / "storage/config/config.properties").read_text().splitlines() if line and not line.startswith("#")
    )
    assert props["inference_address"] == "http://0.0.0.0:8085"
    assert props["model_store"] == "/mnt/models/model-store"
    snapshot = json.loads(props["model_snapshot"])
    entry = snapshot["models"]["tiny"]["1"]
    assert snapshot["modelCount"] == 1 and entry["marName"] == "tiny.mar" and entry["defaultVersion"] is True
    with zipfile.ZipFile(folder / "storage/model-store/tiny.mar") as zf:
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
    assert manifest["model"]["modelName"] == "tiny" and manifest["model"]["serializedFile"] in zf.namelist()

    isvc = _manifest(doc)
    jsonschema.validate(isvc, schema)
    model = isvc["spec"]["predictor"]["model"]
    assert isvc["kind"] == "InferenceService" and isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert model["modelFormat"]["name"] == "pytorch" and model["protocolVersion"] == "v1"
    assert model["storageUri"] == "s3://bucket/models/tiny"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert model["readinessProbe"]["httpGet"]["path"] == "/v1/models/tiny"
    assert isvc["spec"]["predictor"]["maxReplicas"] == 4 and isvc["spec"]["predictor"]["scaleMetric"] == "concurrency"
    assert doc["next_steps"][0].startswith("aws s3 cp --recursive") and doc["next_steps"][1].startswith("kubectl apply -f")


def test_triton_runtime_storage_is_a_checked_repository(store, schema):
    doc = _deploy(store, "--runtime", "triton", "--storage-uri", "gs://bucket/tiny")
    folder = Path(doc["folder"])
    assert {"storage/tiny/config.pbtxt", "storage/tiny/1/model.onnx"} <= set(doc["files"])
    config = (folder / "storage/tiny/config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config
    assert run_pack("check-repo", str(folder / "storage")).returncode == 0
    isvc = _manifest(doc)
    jsonschema.validate(isvc, schema)
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] == "v2"
    assert model["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert "nvidia.com/gpu" not in model["resources"]["limits"]


def test_broken_manifests_fail_the_schema(store, schema):
    from packager.targets.kserve.manifest import validate

    isvc = _manifest(_deploy(store, "--storage-uri", "s3://b/t"))
    assert validate(isvc) == []
    broken = json.loads(json.dumps(isvc))
    broken["spec"]["predictor"]["minReplicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
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


def test_bad_options_are_one_line_errors(store):
    proc = run_pack("deploy", "tiny", "--target", "kserve", "--store", str(store))
    assert proc.returncode == 2 and "--storage-uri is required" in proc.stderr
    proc = run_pack("deploy", "tiny", "--target", "kserve", "--store", str(store), "--storage-uri", "bucket/x")
    assert proc.returncode == 2 and "no scheme" in proc.stderr
    proc = run_pack("deploy", "tiny", "--target", "kserve", "--store", str(store), "--runtime", "triton", "--protocol", "v1", "--storage-uri", "s3://b/x")
    assert proc.returncode == 2 and "does not speak protocol v1" in proc.stderr
    assert not (store / "kserve" / "tiny" / "1" / "triton").exists()


def test_model_names_become_dns_labels():
    from packager.targets.kserve.manifest import service_name

    assert service_name("mobilenet_v3_small") == "mobilenet-v3-small"
    assert service_name("9lives") == "m-9lives"


def test_apply_uses_kubectl_when_a_context_exists(store, tmp_path):
    """No cluster runs here: a stand-in kubectl on PATH records the call (the apply path and its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n[ \"$1\" = config ] && echo test-context\nexit 0\n")
    kubectl.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = run_pack("deploy", "tiny", "--target", "kserve", "--store", str(store), "--storage-uri", "s3://b/t", "--apply", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["applied"] is True
    assert f"apply -f {doc['manifest']}" in calls.read_text()
    # without kubectl: nothing applied, the commands to run are printed
    proc = run_pack("deploy", "tiny", "--target", "kserve", "--store", str(store), "--storage-uri", "s3://b/t", "--apply", "--json",
                    env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and json.loads(proc.stdout)["applied"] is False
    assert "not applying" in proc.stderr
