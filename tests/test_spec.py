"""pack.yaml: schema errors name the failing path; user models with spec-declared inputs and outputs build."""

import json
import textwrap

import numpy as np

from conftest import run_pack

MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(1000, 8)
            self.head = nn.Linear(8, 5)

        def forward(self, tokens, mask):
            h = self.emb(tokens) * mask.unsqueeze(-1)
            return self.head(h), h.mean(dim=1)

    def build():
        return Tagger()
    """
)


def _write(tmp_path, spec: str, model: str = MODEL):
    (tmp_path / "model.py").write_text(model)
    (tmp_path / "pack.yaml").write_text(textwrap.dedent(spec))
    return tmp_path / "pack.yaml"


SPEC = """
    name: tagger
    source: model.py:build
    inputs:
      - {name: tokens, shape: [2, 16], dtype: int64, dynamic_axes: [0, 1], range: [0, 1000]}
      - {name: mask, shape: [2, 16], dtype: float32, dynamic_axes: [0, 1], range: [0, 1]}
    outputs:
      - {name: logits, dynamic_axes: [0, 1]}
      - {name: pooled}
    batch_sizes: [1, 3]
    tolerance: {atol: 1.0e-4, rtol: 1.0e-3}
"""


def test_spec_with_int_inputs_and_two_outputs_builds(tmp_path):
    spec = _write(tmp_path, SPEC)
    store = tmp_path / "store"
    proc = run_pack("build", "--spec", str(spec), "--store", str(store), "--json", "--iterations", "2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["name"] == "tagger"
    assert [o["name"] for o in report["outputs"]] == ["logits", "pooled"]
    assert report["outputs"][0]["shape"] == [1, 16, 5]
    assert report["validation"]["onnx"]["passed"] and report["validation"]["torchscript"]["passed"]
    assert {c["batch"] for c in report["validation"]["onnx"]["checks"]} == {1, 3}
    tokens = np.load(store / "tagger" / "1" / report["samples"]["inputs"][0])
    assert tokens.dtype == np.int64 and tokens.min() >= 0 and tokens.max() < 1000
    # ONNX keeps both declared dynamic axes of `tokens`
    import onnx

    graph = onnx.load(str(store / "tagger" / "1" / "model.onnx")).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_param


def test_command_line_overrides_spec(tmp_path):
    spec = _write(tmp_path, SPEC)
    proc = run_pack("build", "--spec", str(spec), "--name", "tagger2", "--version", "7", "--batch-sizes", "2",
                    "--store", str(tmp_path / "s"), "--json", "--iterations", "0")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["name"], report["version"], report["batch_sizes"]) == ("tagger2", "7", [2])
    assert (tmp_path / "s" / "tagger2" / "7" / "report.json").is_file()


def test_invalid_yaml_names_the_line(tmp_path):
    spec = tmp_path / "pack.yaml"
    spec.write_text("name: x\ninputs: [\n  - {name: a\n")
    proc = run_pack("build", "--spec", str(spec))
    assert proc.returncode == 2
    assert "invalid YAML at line" in proc.stderr and "Traceback" not in proc.stderr


def test_schema_violation_names_the_path(tmp_path):
    spec = _write(tmp_path, SPEC.replace("shape: [2, 16], dtype: float32", "shape: [2, -16], dtype: float32"))
    proc = run_pack("build", "--spec", str(spec))
    assert proc.returncode == 2
    assert "inputs[1].shape[1]" in proc.stderr and "-16" in proc.stderr


def test_unknown_key_is_rejected_with_allowed_keys(tmp_path):
    spec = _write(tmp_path, SPEC + "    batchsize: 4\n")
    proc = run_pack("build", "--spec", str(spec))
    assert proc.returncode == 2
    assert "'batchsize' was unexpected" in proc.stderr and "batch_sizes" in proc.stderr


def test_wrong_dtype_in_spec(tmp_path):
    spec = _write(tmp_path, SPEC.replace("dtype: int64", "dtype: float32"))
    proc = run_pack("build", "--spec", str(spec), "--store", str(tmp_path / "s"))
    assert proc.returncode == 2
    assert "the model failed on example inputs" in proc.stderr and "tokens [1, 16] float32" in proc.stderr
    assert not (tmp_path / "s" / "tagger" / "1").exists()


def test_spec_output_count_must_match(tmp_path):
    spec = _write(tmp_path, SPEC.replace("      - {name: pooled}\n", ""))
    proc = run_pack("build", "--spec", str(spec), "--store", str(tmp_path / "s"))
    assert proc.returncode == 2
    assert "names 1 outputs but the model returns 2" in proc.stderr


def test_per_output_tolerance_is_the_gate(tmp_path):
    """A zero tolerance on the output fails ONNX on it: with `formats: [onnx]` the build fails (exit 3); with the
    default formats ONNX is recorded as failed and the exact formats are kept. The spec's tolerance is the gate."""
    spec = tmp_path / "pack.yaml"
    spec.write_text("source: tiny\nformats: [onnx]\noutputs:\n  - {name: logits, atol: 0, rtol: 0}\n")
    proc = run_pack("build", "--spec", str(spec), "--store", str(tmp_path / "s"), "--iterations", "0")
    assert proc.returncode == 3, proc.stderr
    assert "error: onnx: no ONNX exporter produced a file that passes" in proc.stderr and "atol 0 + rtol 0" in proc.stderr
    assert not (tmp_path / "s" / "tiny" / "1").exists()
    spec.write_text("source: tiny\noutputs:\n  - {name: logits, atol: 0, rtol: 0}\n")
    proc = run_pack("build", "--spec", str(spec), "--store", str(tmp_path / "s"), "--iterations", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["formats"]["onnx"]["status"] == "failed" and "onnx" not in report["artifacts"]
    assert any(w.startswith("onnx failed:") for w in report["warnings"])
