"""Variants (packager/variants/): the task-level agreement measures, the settings from the command line and the
spec, the served-file resolution every target uses, calibration files read without pickles, and the judge rejecting
a variant whose agreement is below its bound even when its elementwise gate is loose enough to pass. (Variants of
real builds: tests/integration/test_variant_builds.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from packager import variants
from packager.errors import UsageError
from packager.registry import Tolerance
from packager.report.cases import Case
from packager.variants import MakeContext, VariantKind, VariantSettings, parse_kinds, settings_from
from packager.variants.agreement import agreement, boxes, cosine, top_k
from packager.variants.calibration import read_calibration
from tests.helpers.reports import make_report

RNG = np.random.default_rng(0)


def test_top_k_counts_flipped_classes() -> None:
    logits = RNG.standard_normal((10, 20)).astype(np.float32)
    assert top_k([([logits], [logits.copy()])]) == {"top1": 1.0, "top5": 1.0}
    flipped = logits.copy()
    best = logits.argmax(axis=1)
    flipped[np.arange(3), best[:3]] = -100.0  # three rows lose their best class
    values = top_k([([logits], [flipped])])
    assert values["top1"] == pytest.approx(0.7)
    assert 0.9 < values["top5"] < 1.0
    result = agreement("top-k", [([logits], [flipped])], {"top1": 0.9, "top5": 0.8})
    assert not result["passed"] and "top1 0.7000 < bound 0.9" in result["reason"]


def test_cosine_takes_the_worst_row() -> None:
    out = RNG.standard_normal((4, 32))
    noisy = out + 1e-3 * RNG.standard_normal(out.shape)
    assert cosine([([out], [noisy])])["cosine"] > 0.999
    noisy[2] = -noisy[2]
    assert cosine([([out], [noisy])])["cosine"] == pytest.approx(-1.0, abs=1e-3)
    assert cosine([([out], [out[:2]])])["cosine"] == 0.0  # another shape cannot agree


def test_boxes_match_by_class_and_iou() -> None:
    head = np.zeros((1, 6, 3))  # cx, cy, w, h + 2 classes, 3 anchors
    head[0, :4] = [[10, 50, 90], [10, 50, 90], [8, 8, 8], [8, 8, 8]]
    head[0, 4] = [0.9, 0.1, 0.8]  # anchors 0 and 2 are confident in class 0
    assert boxes([([head], [head.copy()])]) == {"boxes": 1.0}
    moved = head.copy()
    moved[0, 0, 2] += 8  # anchor 2's box moved by its own width: IoU 0
    assert boxes([([head], [moved])]) == {"boxes": 0.5}
    other = head.copy()
    other[0, 5, 0] = 0.95  # anchor 0 now says class 1
    assert boxes([([head], [other])]) == {"boxes": 0.5}


def test_kinds_and_settings() -> None:
    assert parse_kinds("int8-static,slim") == ["slim", "int8-static"]  # registry order
    assert parse_kinds("all") == ["ort-optimized", "slim", "int8-dynamic", "int8-static", "fp16"]
    with pytest.raises(UsageError, match="unknown variant kind 'int4'"):
        parse_kinds("int4")
    pinned = settings_from({}, {"serve_variant": "int8-dynamic"})
    assert pinned.kinds == ["int8-dynamic"] and pinned.serve == "int8-dynamic"
    spec = {
        "variants": {"kinds": ["slim"], "min_speedup": 1.3, "tolerances": {"slim": {"atol": 0.1}}, "agreement": {"top1": 0.5}}
    }
    settings = settings_from(spec, {"min_speedup": 2.0})
    assert settings.min_speedup == 2.0 and settings.tolerances["slim"].atol == 0.1 and settings.agreement["top1"] == 0.5
    with pytest.raises(UsageError, match="serve-variant"):
        settings_from({}, {"serve_variant": "fastest"})
    with pytest.raises(UsageError, match="calibration file not found"):
        settings_from({}, {"variants": "int8-static", "calibration": "/nonexistent.npz"})


def test_spec_schema_checks_the_variants_section() -> None:
    from packager.build import spec as spec_mod

    spec_mod.check({"variants": {"kinds": ["int8-dynamic"], "agreement": {"cosine": 0.999}}}, "pack.yaml")
    with pytest.raises(UsageError, match="variants.kinds"):
        spec_mod.check({"variants": {"kinds": ["int4"]}}, "pack.yaml")
    with pytest.raises(UsageError, match="variants.agreement.top1"):
        spec_mod.check({"variants": {"agreement": {"top1": 2}}}, "pack.yaml")


def test_served_file_is_the_one_resolution_point() -> None:
    plain = make_report()
    assert plain.served_file("onnx") == "model.onnx"
    section = {
        "served": "int8-dynamic",
        "results": [{"kind": "int8-dynamic", "status": "kept", "file": "variants/int8-dynamic/model.onnx"}],
    }
    served = make_report(variants=section, artifacts={"onnx": "model.onnx", "torchscript": "model.pt"})
    assert served.served_file("onnx") == "variants/int8-dynamic/model.onnx"
    assert served.served_file("torchscript") == "model.pt"  # variants are ONNX files
    assert make_report(variants={**section, "served": None}).served_file("onnx") == "model.onnx"


def test_a_report_naming_a_variant_outside_the_build_is_refused() -> None:
    from packager.errors import ValidationFailed

    section = {"served": "slim", "results": [{"kind": "slim", "status": "kept", "file": "../../etc/passwd"}]}
    with pytest.raises(ValidationFailed, match="variants.results.0.file"):
        make_report(variants=section)


def test_calibration_npz_is_read_without_pickles(tmp_path: Path) -> None:
    report = make_report()
    good = tmp_path / "good.npz"
    np.savez(good, x=np.ones((8, 3), np.float32))
    assert read_calibration(good, report.inputs)["x"].shape == (8, 3)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"code": 1}], dtype=object))
    with pytest.raises(UsageError, match="holds Python objects"):
        read_calibration(pickled, report.inputs)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, y=np.ones((8, 3), np.float32))
    with pytest.raises(UsageError, match="has no array 'x'"):
        read_calibration(wrong, report.inputs)
    shaped = tmp_path / "shaped.npz"
    np.savez(shaped, x=np.ones((8, 4), np.float32))
    with pytest.raises(UsageError, match="axis 1"):
        read_calibration(shaped, report.inputs)


def _linear_onnx(path: Path, weight: np.ndarray, negate: bool = False) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "w"], ["z" if negate else "y"])]
    if negate:
        nodes.append(helper.make_node("Neg", ["z"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def test_a_variant_below_its_agreement_bound_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deliberately broken variant (outputs negated) inside loose tolerances: the gate passes, the agreement
    (cosine -1 < 0.99) rejects it, and its file is removed."""
    from packager.export import runner_for
    from packager.variants.judge import run_variants

    weight = RNG.standard_normal((3, 5)).astype(np.float32)
    _linear_onnx(tmp_path / "model.onnx", weight)

    def broken(ctx: MakeContext) -> dict[str, object]:
        _linear_onnx(ctx.out, weight, negate=True)
        return {}

    monkeypatch.setitem(
        variants.VARIANTS._entries, "negated", VariantKind("negated", "broken on purpose", broken, Tolerance(100, 100))
    )
    report = make_report(outputs=[{"name": "y", "shape": [1, 5], "dtype": "float32", "dynamic_axes": [0]}])
    cases = []
    for batch in (1, 4):
        x = RNG.standard_normal((batch, 3)).astype(np.float32)
        cases.append(Case(f"batch {batch}", batch, [x], [x @ weight]))
    settings = VariantSettings(kinds=["negated"], min_speedup=0.0)
    section = run_variants(tmp_path, report, settings, cases, "eager", iterations=3)
    (record,) = section["results"]
    assert record["gate"]["passed"] is True
    assert record["status"] == "rejected" and record["reason"].startswith("agreement: cosine -1")
    assert record["file"] is None and not (tmp_path / "variants").exists()
    assert section["served"] is None
    assert runner_for("onnx", tmp_path / "model.onnx")([cases[0].inputs[0]])[0].shape == (1, 5)


def test_cosine_over_cases_of_different_sizes() -> None:
    long, short = RNG.standard_normal((2, 8, 4)), RNG.standard_normal((2, 4, 4))
    assert cosine([([long], [long]), ([short], [short])])["cosine"] == pytest.approx(1.0)


def test_servers_are_held_to_the_served_variants_tolerances(tmp_path: Path) -> None:
    """Deploy smoke tests and health probes compare a server's answer within the served variant's tolerances; verify
    and the bench's eager check keep the build's."""
    from packager.report.samples import load_sample

    (tmp_path / "samples").mkdir()
    np.save(tmp_path / "samples" / "input.x.npy", np.ones((1, 3), np.float32))
    np.save(tmp_path / "samples" / "output.y.npy", np.ones((1, 3), np.float32))
    section = {
        "served": "int8-dynamic",
        "results": [
            {
                "kind": "int8-dynamic",
                "status": "kept",
                "file": "variants/int8-dynamic/model.onnx",
                "tolerance": [{"output": "y", "atol": 0.5, "rtol": 0.5}],
            }
        ],
    }
    samples = {"batch": 1, "inputs": ["samples/input.x.npy"], "outputs": ["samples/output.y.npy"]}
    report = make_report(variants=section, samples=samples)
    assert load_sample(tmp_path, report).tolerances == [Tolerance(1e-4, 1e-3)]
    served = load_sample(tmp_path, report, serving=True)
    assert served.tolerances == [Tolerance(0.5, 0.5)]
    assert served.check_outputs([np.full((1, 3), 1.05, np.float32)])[0].passed
    plain = make_report(samples=samples)
    assert load_sample(tmp_path, plain, serving=True).tolerances == [Tolerance(1e-4, 1e-3)]


def test_int8_tolerances_follow_each_outputs_scale() -> None:
    from packager.variants import get_variant

    int8 = get_variant("int8-static")
    scaled = int8.tolerance_for(1e-4, 1e-3, 111.0)
    assert scaled.atol == pytest.approx(5.55) and scaled.rtol == 0.5
    assert int8.tolerance_for(1e-4, 1e-3, None) == Tolerance(0.5, 0.5)  # no recorded scale (integer outputs)
    assert get_variant("slim").tolerance_for(1e-5, 1e-4, 111.0) == Tolerance(1e-5, 1e-4)  # the build's own


def test_a_failing_tool_is_a_failed_variant_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from packager.variants.judge import run_variants

    _linear_onnx(tmp_path / "model.onnx", RNG.standard_normal((3, 5)).astype(np.float32))

    def crashes(ctx: MakeContext) -> dict[str, object]:
        ctx.out.write_bytes(b"half a model")
        raise RuntimeError("the quantizer fell over\nsecond line")

    monkeypatch.setitem(variants.VARIANTS._entries, "crashes", VariantKind("crashes", "fails on purpose", crashes))
    x = RNG.standard_normal((1, 3)).astype(np.float32)
    section = run_variants(
        tmp_path, make_report(), VariantSettings(kinds=["crashes"]), [Case("batch 1", 1, [x], [x])], "eager", 3
    )
    (record,) = section["results"]
    assert record["status"] == "failed" and record["reason"] == "could not be made: RuntimeError: the quantizer fell over"
    assert not (tmp_path / "variants").exists() and section["served"] is None


def test_a_speed_up_near_the_bound_is_measured_longer(monkeypatch: pytest.MonkeyPatch) -> None:
    from packager.variants import judge

    timed: list[str] = []

    def measure(runner: object, inputs: object, batch: int, iterations: int) -> dict[str, float]:
        timed.append(str(runner))
        return {"p50_ms": 2.0}  # base and variant equally fast: a speed-up of 1 (no clock: load cannot move it)

    monkeypatch.setattr(judge, "measure", measure)
    case = Case("batch 1", 1, [np.zeros((1, 3), np.float32)], [])
    near = judge.side_by_side("base", "variant", [case], iterations=3, bound=1.0)  # 1x: at the bound
    assert near["rounds"] == judge.MAX_ROUNDS and set(near["p50_ms"]) == {"1"} and near["speedup"] == 1.0
    assert timed == ["base", "variant"] * judge.MAX_ROUNDS  # in alternation
    clear = judge.side_by_side("base", "variant", [case], iterations=3, bound=100.0)  # far below the bound
    assert clear["rounds"] == judge.ROUNDS
