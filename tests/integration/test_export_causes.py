"""Issue 24, items 3-6: nn.TransformerEncoder builds every default format (the fused attention fast path off for
export), padding masks are filled with False and the report says which rule filled each input, a failed export is
one line that names the operator, the exporter and its fix with nothing but pack's lines on the terminal, and pt2
tries what torch.export offers before it gives up. Small seeded models (tests/integration/cause_models.py), built
through the real CLI; each format's outcome asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import run_pack

pytestmark = pytest.mark.slow
MODELS = Path(__file__).parent / "cause_models.py"


def _build(store: Path, model: str, *args: str) -> tuple[int, dict | None, str]:
    proc = run_pack("build", f"{MODELS}:{model}", "--name", model, "--store", str(store), "--iterations", "0", "--json", *args)
    document = json.loads(proc.stdout) if proc.returncode == 0 else None  # stdout is one JSON document, nothing else
    if proc.returncode != 0:
        assert proc.stdout == "", proc.stdout[:2000]
    return proc.returncode, document, proc.stderr


def _only_pack_lines(stderr: str) -> None:
    strangers = [line for line in stderr.splitlines() if not line.startswith(("pack: ", "error: "))]
    assert not strangers, strangers[:5]


@pytest.mark.parametrize(
    "model, inputs",
    [
        ("encoder_batch_first", ["src:2x8x16:dyn=0,1", "src_key_padding_mask:2x8:bool:dyn=0,1"]),
        # batch-first without a mask: the corpus's transformer_encoder (test_export_corpus.py)
        ("encoder_sequence_first", ["src:8x2x16:dyn=", "src_key_padding_mask:2x8:bool:dyn="]),
        ("encoder_sequence_first", ["src:8x2x16:dyn=0"]),  # axis 0 is the sequence: varied as the batch is
    ],
)
def test_transformer_encoders_build_every_default_format(model, inputs, tmp_path):
    rc, report, stderr = _build(tmp_path, model, *[f"--input={i}" for i in inputs])
    assert rc == 0, stderr[-2000:]
    assert {f: o["status"] for f, o in report["formats"].items()} == {"torchscript": "passed", "onnx": "passed", "pt2": "passed"}
    _only_pack_lines(stderr)
    fills = {i["name"]: i["fill"] for i in report["inputs"]}
    assert fills["src"]["values"] == "random"
    if "src_key_padding_mask" in fills:  # True would mark every position padding
        assert fills["src_key_padding_mask"]["values"] == "zeros" and "padding mask" in fills["src_key_padding_mask"]["rule"]


def test_a_spec_fill_is_recorded_and_used(tmp_path):
    spec = tmp_path / "pack.yaml"
    spec.write_text(
        f"source: {MODELS}:encoder_batch_first\nname: filled\nformats: [torchscript]\ninputs:\n"
        "  - {name: src, shape: [2, 8, 16], dynamic_axes: [0]}\n"
        "  - {name: src_key_padding_mask, shape: [2, 8], dtype: bool, dynamic_axes: [0], fill: random}\n"
    )
    proc = run_pack("build", "--spec", str(spec), "--store", str(tmp_path / "s"), "--iterations", "0", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    mask = json.loads(proc.stdout)["inputs"][1]
    assert mask["fill"] == {"values": "random", "rule": "the spec's `fill`"} and mask["dtype"] == "bool"


def test_a_failed_legacy_onnx_export_names_the_operator_and_prints_only_pack_lines(tmp_path):
    rc, report, stderr = _build(tmp_path, "adaptive_head", "--input=x:2x3x16x16:dyn=0,2,3")
    assert rc == 0, stderr[-2000:]  # --json: stdout parsed as one JSON document (torchscript and pt2 keep the sizes)
    _only_pack_lines(stderr)  # no graph dump (fd 1), no ONNX Runtime log (fd 2)
    assert {f: o["status"] for f, o in report["formats"].items()} == {"torchscript": "passed", "onnx": "failed", "pt2": "passed"}
    onnx = report["formats"]["onnx"]
    assert "legacy: export failed: operator aten::adaptive_avg_pool2d with a dynamic input size" in onnx["reason"]
    assert onnx["fix"].startswith("legacy: declare the height and width static") and "torchvision::models" not in onnx["reason"]
    # required, it is the one error line; with --debug the exporters' own output is shown too
    shown = run_pack(
        "build",
        f"{MODELS}:adaptive_head",
        "--input=x:2x3x16x16:dyn=0,2,3",
        "--formats",
        "onnx",
        "--store",
        str(tmp_path),
        "--name",
        "required",
        "--iterations",
        "0",
        "--debug",
    )
    assert shown.returncode == 3 and "Torch IR graph at exception" in shown.stderr
    line = shown.stderr.strip().splitlines()[-1]
    assert line.startswith("error: onnx: ") and "operator aten::adaptive_avg_pool2d" in line, line


def test_pt2_tries_what_torch_export_offers_and_says_why_each_failed(tmp_path):
    rc, report, stderr = _build(tmp_path, "lstm", "--input=x:4x6x4:dyn=0,1")
    assert rc == 0, stderr[-2000:]
    status = {f: o["status"] for f, o in report["formats"].items()}
    assert status == {"torchscript": "passed", "onnx": "passed", "pt2": "failed"}, report["formats"]
    attempts = report["export"]["pt2"]["attempts"]
    assert [a["attempt"] for a in attempts] == ["non-strict", "size-oblivious"]
    assert all("x axis 1 (fixed at 6)" in a["failed"] for a in attempts)
    pt2 = report["formats"]["pt2"]
    assert "non-strict, size-oblivious: made declared dynamic axes static" in pt2["reason"]
    assert "inside the range" not in pt2["fix"] and "declare those axes static" in pt2["fix"]
