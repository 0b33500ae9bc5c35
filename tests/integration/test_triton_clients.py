"""Triton's own clients, unchanged, against what pack deploys: the logic of Triton's `image_client.py` example (fetch
the model's metadata and config, insist on one input and one output, an NCHW/NHWC image input and its dims,
preprocess an image, ask for the top k classes, parse the `score:index:label` strings) over HTTP and gRPC, against
pack's resnet18 and mobilenet_v3_small on a real tritonserver that pack launched on loopback (slow)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.cli import pack_json, run_pack
from tests.helpers.processes import tritonserver_pids_for
from tests.helpers.torchserve import jpeg_bytes
from tests.helpers.triton import ensure_tritonserver, link_build

pytestmark = [pytest.mark.server, pytest.mark.slow]

CLASSIFIERS = ("resnet18", "mobilenet_v3_small")
TOP_K = 3


@pytest.fixture(scope="module")
def deployed(built, tmp_path_factory):
    """Both classifiers deployed (with Triton the default target) on one tritonserver; stopped at teardown."""
    ensure_tritonserver()
    store = tmp_path_factory.mktemp("triton-clients-store")
    docs = {}
    try:
        for name in CLASSIFIERS:
            link_build(built(name), store)
            docs[name] = pack_json("deploy", name, "--store", str(store))  # no --target: Triton is the default
        yield store, docs
    finally:
        run_pack("stop", "--target", "triton", "--store", str(store))
        assert tritonserver_pids_for(store) == [], "a tritonserver is still running after pack stop"


def parse_model(metadata: dict[str, Any], config: dict[str, Any]) -> tuple[int, str, str, int, int, int, str, str]:
    """image_client.py's parse_model: what a classification model must look like to Triton's example client."""
    import tritonclient.grpc.model_config_pb2 as mc

    if len(metadata["inputs"]) != 1:
        raise AssertionError(f"expecting 1 input, got {len(metadata['inputs'])}")
    if len(metadata["outputs"]) != 1:
        raise AssertionError(f"expecting 1 output, got {len(metadata['outputs'])}")
    if len(config["input"]) != 1:
        raise AssertionError(f"expecting 1 input in model configuration, got {len(config['input'])}")
    input_metadata, input_config, output_metadata = metadata["inputs"][0], config["input"][0], metadata["outputs"][0]
    max_batch_size = int(config.get("max_batch_size", 0))
    if output_metadata["datatype"] != "FP32":
        raise AssertionError(f"expecting output datatype to be FP32, model has {output_metadata['datatype']}")
    batched = max_batch_size > 0
    output_shape = [int(d) for d in output_metadata["shape"]]
    if sum(d > 1 for d in output_shape) != 1:
        raise AssertionError(f"expecting model output to be a vector, got {output_shape}")
    input_shape = [int(d) for d in input_metadata["shape"]]
    if len(input_shape) != 3 + int(batched):
        raise AssertionError(f"expecting input to have {3 + int(batched)} dimensions, model has {len(input_shape)}")
    fmt = input_config.get("format", "FORMAT_NONE")
    if isinstance(fmt, int):
        fmt = mc.ModelInput.Format.Name(fmt)
    if fmt not in ("FORMAT_NCHW", "FORMAT_NHWC"):
        raise AssertionError(f"unexpected input format {fmt}, expecting FORMAT_NCHW or FORMAT_NHWC")
    dims = input_shape[1:] if batched else input_shape
    c, h, w = dims if fmt == "FORMAT_NCHW" else (dims[2], dims[0], dims[1])
    return max_batch_size, input_metadata["name"], output_metadata["name"], c, h, w, fmt, input_metadata["datatype"]


def preprocess(image: bytes, fmt: str, c: int, h: int, w: int) -> np.ndarray:
    """image_client.py's preprocess with --scaling INCEPTION: RGB, resized to w x h, scaled to [-1, 1], NCHW or NHWC."""
    from PIL import Image

    pil = Image.open(io.BytesIO(image)).convert("RGB" if c == 3 else "L").resize((w, h), Image.Resampling.BILINEAR)
    typed = np.asarray(pil).astype(np.float32)
    scaled = typed / 127.5 - 1
    return np.ascontiguousarray(scaled.transpose(2, 0, 1) if fmt == "FORMAT_NCHW" else scaled)


def classify(protocol: str, url: str, model: str, image: bytes, k: int) -> tuple[np.ndarray, list[tuple[float, int, str]]]:
    """One image through Triton's client library as image_client.py sends it; (the input sent, [(score, index, label)])."""
    from google.protobuf import json_format

    if protocol == "grpc":
        import tritonclient.grpc as client_module

        client = client_module.InferenceServerClient(url)
        metadata = json_format.MessageToDict(client.get_model_metadata(model), preserving_proto_field_name=True)
        config = json_format.MessageToDict(client.get_model_config(model).config, preserving_proto_field_name=True)
    else:
        import tritonclient.http as client_module  # type: ignore[no-redef]  # the same API over HTTP

        client = client_module.InferenceServerClient(url)
        metadata, config = client.get_model_metadata(model), client.get_model_config(model)
    try:
        max_batch_size, input_name, output_name, c, h, w, fmt, dtype = parse_model(metadata, config)
        data = preprocess(image, fmt, c, h, w)
        batch = data[None] if max_batch_size > 0 else data
        item = client_module.InferInput(input_name, list(batch.shape), dtype)
        item.set_data_from_numpy(batch)
        output = client_module.InferRequestedOutput(output_name, class_count=k)
        result = client.infer(model, [item], outputs=[output])
        answer = result.as_numpy(output_name)
    finally:
        client.close()
    assert answer is not None and len(answer) == 1, answer  # one image in the batch
    rows = []
    for entry in answer[0]:
        text = entry.decode() if isinstance(entry, bytes) else "".join(chr(x) for x in entry)
        score, index, label = text.split(":", 2)
        rows.append((float(score), int(index), label))
    return batch, rows


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", CLASSIFIERS)
def test_image_client_logic(deployed, protocol, model):
    import onnxruntime as ort

    store, docs = deployed
    doc = docs[model]
    assert doc["target"] == "triton" and doc["smoke_test"]["passed"]
    url = doc["url"].split("://", 1)[1] if protocol == "http" else doc["grpc_url"]
    assert url.startswith("127.0.0.1:")
    batch, rows = classify(protocol, url, model, jpeg_bytes(300, 400, seed=5), TOP_K)
    # the same pixels through onnxruntime on the build's own export: Triton's classification extension returns the
    # k largest raw output values, their indices, and the lines of labels.txt at those indices
    build = store / model / "1"
    session = ort.InferenceSession(str(build / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: batch})[0][0]
    top = np.argsort(-logits, kind="stable")[:TOP_K]
    labels = (build / "labels.txt").read_text().splitlines()
    assert [r[1] for r in rows] == [int(i) for i in top]
    np.testing.assert_allclose([r[0] for r in rows], logits[top], rtol=1e-3, atol=1e-4)
    assert [r[2] for r in rows] == [labels[i] for i in top]
    assert len(set(labels)) == 1000


def test_config_carries_format_and_labels(deployed):
    from packager.targets.triton import config as cfg

    store, docs = deployed
    import json

    repository = Path(json.loads((store / ".servers" / "triton" / "state.json").read_text())["repository"])
    for name in CLASSIFIERS:
        config = cfg.read(repository / name / "config.pbtxt")
        assert cfg.pb().ModelInput.Format.Name(config.input[0].format) == "FORMAT_NCHW"
        assert list(config.input[0].dims) == [3, 224, 224] and config.max_batch_size > 0
        assert config.output[0].label_filename == "labels.txt"
        assert (repository / name / "labels.txt").read_text() == (store / name / "1" / "labels.txt").read_text()
