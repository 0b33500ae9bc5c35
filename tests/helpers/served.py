"""What the served-file tests of both tiers share: a build that serves a kept ONNX variant without running
`pack optimize` (the unit tier), and the arrays of a v2 infer answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from packager.report.build_report import BuildReport

VARIANT = "variants/int8-dynamic/model.onnx"
V2_TO_NUMPY = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32}


def serve_a_variant(folder: Path) -> str:
    """Make the build at `folder` serve a kept int8-dynamic variant: a copy of its model.onnx that differs in its
    bytes only (a doc string), recorded in the report and packaged for the targets as `pack optimize` does it.
    Returns the variant's path."""
    import onnx

    from packager.targets import packagers

    model = onnx.load(str(folder / "model.onnx"))
    model.doc_string = "a stand-in for a kept variant"
    (folder / VARIANT).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / VARIANT))
    report = BuildReport.load(folder)
    report.variants = {
        "served": "int8-dynamic",
        "reference": "eager",
        "results": [{"kind": "int8-dynamic", "status": "kept", "file": VARIANT}],
    }
    report.targets = {name: package(folder, report) for name, package in packagers().items()}  # as optimize re-packages
    report.save(folder)
    return VARIANT


def v2_arrays(answer: Any, names: list[str]) -> list[np.ndarray]:
    """The named outputs of a v2 infer answer (JSON tensors), as arrays."""
    outputs = {o["name"]: o for o in answer["outputs"]}
    return [np.asarray(outputs[n]["data"], dtype=V2_TO_NUMPY[outputs[n]["datatype"]]).reshape(outputs[n]["shape"]) for n in names]
