"""ONNX models written by hand for the unit tier (no exporter runs there): an identity graph, and a build of the
built-in `tiny` model made without any exporter: what `pack build tiny --formats
onnx` leaves, with the model written by hand.

The model is a small classifier of the tiny entry's shape (input [N, 3, 32, 32] -> logits [N, 10]): a global average
pool and a dense layer. numpy runs it as the eager reference; onnx.helper writes the same computation as model.onnx,
with the metadata pack's exporter adds. The rest is pack's own: the plan of the built-in entry, the seeded validation
cases, the parity gate on onnxruntime, the samples, the targets' packaging and the report (`record.assemble`,
`BuildReport.save`). The tiers differ in the file only: an integration test runs the real exporters."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = 10
CHANNELS = 3
OPSET = 17


def _weights(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((CHANNELS, CLASSES)).astype(np.float32), rng.standard_normal(CLASSES).astype(np.float32)


def _eager(weight: np.ndarray, bias: np.ndarray, arrays: list[np.ndarray]) -> list[np.ndarray]:
    pooled = arrays[0].astype(np.float32).mean(axis=(2, 3), dtype=np.float32)
    return [(pooled @ weight + bias).astype(np.float32)]


def _model_proto(weight: np.ndarray, bias: np.ndarray, metadata: dict[str, Any]) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", CHANNELS, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    for key, value in sorted(metadata.items()):  # pack's own keys, as packager/export/onnx.py writes them
        entry = proto.metadata_props.add()
        entry.key = f"pack.{key}"
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return proto


def identity_onnx(path: Path) -> Path:
    """A [N, 2] -> [N, 2] identity graph at `path` (x -> y): the smallest model every runtime loads."""
    import onnx
    import onnx.helper as h

    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 2])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 2])
    model = h.make_model(
        h.make_graph([h.make_node("Identity", ["x"], ["y"])], "g", [x], [y]), opset_imports=[h.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_tiny_build(store: Path) -> Path:
    """Write `<store>/tiny/1` and return it: a checked build of the tiny entry serving model.onnx."""
    import onnx

    from packager.build.modelio import Binding
    from packager.build.plan import resolve
    from packager.build.record import assemble, write_samples
    from packager.build.reference import Reference
    from packager.export import Outcome
    from packager.export.onnx import FILE, load
    from packager.registry import OutputSpec
    from packager.report.cases import batch_cases
    from packager.report.store import AtomicVersion
    from packager.report.validate import validate_model_outputs
    from packager.targets import packagers

    plan = resolve("tiny", None, {"device": "cpu", "formats": "onnx"})
    weight, bias = _weights(plan.seed)
    cases = batch_cases(plan.inputs, plan.batch_sizes, plan.seed)
    for case in cases:
        case.outputs = _eager(weight, bias, case.inputs)
    names = [o.name for o in plan.outputs]
    ref = Reference(cases, [OutputSpec(n) for n in names], [plan.tolerance] * len(names), [], [], "tensor")
    metadata = {
        "name": plan.name,
        "version": plan.version,
        "task": plan.task,
        "inputs": [i.to_dict() for i in plan.inputs],
        "outputs": names,
        "preprocessing": plan.preprocessing,
        "postprocessing": plan.postprocessing,
    }
    atomic = AtomicVersion(store, plan.name, plan.version)
    with atomic as folder:
        path = folder / FILE
        proto = _model_proto(weight, bias, metadata)
        onnx.checker.check_model(proto, full_check=True)
        path.write_bytes(proto.SerializeToString())
        checks = validate_model_outputs(load(path, "cpu"), cases, names, ref.tolerances)
        info = {"exporter": "onnx.helper", "opset": OPSET, "slim": False, "rejected": [], "not_tried": []}
        outcomes = {"onnx": Outcome.from_checks(FILE, checks, info, "the hand-written ONNX graph")}
        assert outcomes["onnx"].status == "passed", outcomes["onnx"].reason
        samples = write_samples(folder, plan.inputs, names, cases[0])
        assert plan.entry is not None and plan.entry.labels is not None
        (folder / "labels.txt").write_text("\n".join(plan.entry.labels()) + "\n")
        weights = {
            "random": True,
            "initialised_by": "tests/helpers/onnx_build.py",
            "seed": plan.seed,
            "state_dict_sha256": hashlib.sha256(weight.tobytes() + bias.tobytes()).hexdigest(),  # the parameters
        }
        binding = Binding(tuple(i.name for i in plan.inputs), False, (False,) * len(plan.inputs))
        report = assemble(plan, ref, outcomes, weights, "cpu", {}, samples, True, binding, [])
        report.targets = {name: package(folder, report) for name, package in packagers().items()}
        report.save(folder)
        return atomic.commit()
