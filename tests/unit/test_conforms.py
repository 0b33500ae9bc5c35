"""The quick schema check (packager/report/conforms.py): a report pack wrote is read without jsonschema, and the check
never passes a document jsonschema refuses (mutated reports and the edge cases of JSON equality and types), so a
crafted report still meets the full validation and its messages."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packager.errors import ValidationFailed
from packager.report.build_report import BuildReport, migrate, schema
from packager.report.conforms import conforms
from tests.helpers.reports import DEFAULTS, make_report
from tests.unit.test_crafted_properties import mutate


def _refused(doc: Any) -> bool:
    return any(True for _ in jsonschema.Draft202012Validator(schema()).iter_errors(doc))


@pytest.fixture(scope="module")
def tiny_report(built: Callable[[str], Path]) -> dict[str, Any]:
    return migrate(json.loads((built("tiny") / "report.json").read_text()))


def test_a_report_pack_wrote_is_read_without_jsonschema(built: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_jsonschema(*_: Any) -> Any:
        raise AssertionError("the full validation ran on a report that conforms")

    monkeypatch.setattr(jsonschema, "Draft202012Validator", no_jsonschema)
    assert BuildReport.load(built("tiny")).name == "tiny"
    assert make_report().to_dict()["name"] == "m"  # and written without it


def test_a_crafted_report_still_gets_the_full_validation_and_its_message() -> None:
    with pytest.raises(ValidationFailed, match="names a path outside the build folder"):
        make_report(artifacts={"onnx": "../../etc/passwd"})


EDGES: list[tuple[str, Any]] = [
    ("pack_report", True),  # const 2: a bool is not 2
    ("pack_report", 2.0),  # jsonschema's call: equal
    ("version", 1.0),  # an integer to jsonschema
    ("version", 1.5),
    ("version", "01"),
    ("version", True),
    ("seed", math.nan),
    ("batch_sizes", [1, 1]),
    ("batch_sizes", [True]),
    ("labels", "/abs"),
    ("labels", "a/../b"),
    ("labels", "a\x00b"),
    ("labels", None),
    ("artifacts", {"onnx": ".."}),
    ("sha256", {"../x": "0" * 64}),
    ("formats", {"onnx": {"status": "maybe"}}),
    ("inputs", [{**DEFAULTS["inputs"][0], "dynamic_axes": [0, 0]}]),
    ("inputs", [{**DEFAULTS["inputs"][0], "dynamic_axes": [0.0]}]),
    ("inputs", []),
    ("surprise", 1),
]


@pytest.mark.parametrize(("field", "value"), EDGES, ids=[f"{f}={v!r}" for f, v in EDGES])
def test_the_quick_check_agrees_with_jsonschema_on_edge_cases(field: str, value: Any) -> None:
    doc = {**DEFAULTS, field: value}
    if _refused(doc):
        assert not conforms(doc, schema()), "the quick check passed what jsonschema refuses"


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_quick_check_never_passes_what_jsonschema_refuses(tiny_report: dict[str, Any], data: Any) -> None:
    assert conforms(tiny_report, schema())
    doc = mutate(data.draw, tiny_report)
    if conforms(doc, schema()):
        assert not _refused(doc), doc
