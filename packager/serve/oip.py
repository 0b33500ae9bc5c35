"""The Open Inference Protocol (KServe v2) as pack speaks it to every server: a v2 request body made from a build's
recorded sample, written into the store, and the ready-to-run `curl` line `pack deploy` prints for it.

Triton serves v2 on `/v2/models/<name>[/versions/<v>]/infer`. TorchServe 0.12 routes `POST /v2/models/<name>/infer`
(the default version; no version path, no v2 metadata or ready routes) to the handler, and pack's handlers answer a
v2 body in v2 there and on `/predictions/<name>[/<v>]`. A token is never written into the line: the line reads it
from the key file when it runs.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from ..report.build_report import BuildReport
from ..report.samples import load_sample

NUMPY_TO_V2 = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


def sample_request(build_dir: Path, report: BuildReport, names: list[str] | None = None) -> dict[str, Any]:
    """The v2 request body of the build's recorded sample; `names`: the inputs as the server calls them."""
    sample = load_sample(build_dir, report)
    names = names or [t.name for t in report.inputs]
    return {
        "inputs": [
            {"name": name, "shape": list(arr.shape), "datatype": NUMPY_TO_V2[str(arr.dtype)], "data": arr.reshape(-1).tolist()}
            for name, arr in zip(names, sample.inputs, strict=True)
        ]
    }


def write_request(store: Path, target: str, report: BuildReport, body: dict[str, Any]) -> Path:
    """`<store>/.requests/<target>/<name>.v<version>.json`, written atomically (outside `.servers/`: a deploy to a
    --url server launches nothing and leaves no server state); its path."""
    path = Path(store) / ".requests" / target / f"{report.name}.v{report.version}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, separators=(",", ":")) + "\n")
    tmp.replace(path)
    return path.resolve()


def curl_line(url: str, request_file: Path | str, key_file: str | None = None, key: str = "inference") -> str:
    """`curl` that POSTs the request file as JSON to `url`; with a TorchServe key file, the bearer token is read from
    it when the line runs (never written into the line)."""
    parts = ["curl -sS -X POST", shlex.quote(url), "-H 'Content-Type: application/json'"]
    if key_file:
        read = "import json,sys; a=sys.argv; print(json.load(open(a[1]))[a[2]][a[3]])"
        parts.append(f'-H "Authorization: Bearer $(python3 -c {shlex.quote(read)} {shlex.quote(key_file)} {key} key)"')
    parts.append("--data-binary " + shlex.quote(f"@{request_file}"))
    return " ".join(parts)
