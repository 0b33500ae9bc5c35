"""The one gate for names and versions (packager/report/names.py), and every command that goes through it: build (--name,
--version, a spec), deploy, archive, repo, undeploy, bench and a report that names a bad model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from packager.build.plan import resolve
from packager.errors import UsageError
from packager.report.names import VERSION_MAX, check_name, check_version
from tests.helpers.cli import invoke

BAD_NAMES = ["tiny\n", "a/b", "..", "../x", "a\\b", "x" * 65, "", "-x", "tiny\x00", "t\u00efny", "a b", "tiny\t", ".hidden"]
BAD_VERSIONS = ["99999999999999999999999", str(VERSION_MAX + 1), "\u00b2", "\u0663", "0", "-1", "+1", "1.0", " 1", "1\n", "", "x"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="not usable as a folder and server name"):
        check_name(name)


@pytest.mark.parametrize("version", [*BAD_VERSIONS, 0, -3, True, 1.5, None, 10**20])
def test_bad_versions_are_refused(version: object) -> None:
    with pytest.raises(UsageError, match="must be a positive integer up to 999,999,999"):
        check_version(version)


def test_good_names_and_versions() -> None:
    assert check_name("yolov8n_preprocess") == "yolov8n_preprocess"
    assert check_name("a" * 64) == "a" * 64
    assert [check_version(v) for v in ("1", "007", 42, str(VERSION_MAX))] == ["1", "7", "42", str(VERSION_MAX)]


@pytest.mark.parametrize("name", ["tiny\n", "a/b", "x" * 65])
def test_build_refuses_a_bad_name_from_the_command_line_and_the_spec(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not usable"):
        resolve("tiny", None, {"name": name})
    spec = tmp_path / "pack.yaml"
    spec.write_text(json.dumps({"source": "tiny", "name": name}))
    with pytest.raises(UsageError):
        resolve(None, str(spec), {})


@pytest.mark.parametrize("version", ["99999999999999999999999", "\u00b2", "0"])
def test_build_refuses_a_bad_version_with_exit_2(version: str, tmp_path: Path) -> None:
    result = invoke("build", "tiny", "--version", version, "--store", str(tmp_path / "s"))
    assert "must be a positive integer" in result.error(2)
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("report.json"))


@pytest.mark.parametrize("command", ["deploy", "archive", "repo"])
def test_commands_on_a_build_refuse_bad_names_and_versions(command: str, tiny_store: Path) -> None:
    extra = ["--target", "kserve"] if command == "deploy" else []
    bad_name = invoke(command, "tiny\n", "--store", str(tiny_store), *extra)
    assert "not usable as a folder and server name" in bad_name.error(2)
    for version in ("99999999999999999999999", "\u00b2"):
        bad_version = invoke(command, "tiny", "--version", version, "--store", str(tiny_store), *extra)
        assert "must be a positive integer" in bad_version.error(2)


@pytest.mark.parametrize("target", ["triton", "torchserve"])
def test_undeploy_refuses_bad_names_and_versions_before_any_server(target: str, tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    assert "not usable" in invoke("undeploy", "../x", "--target", target, "--store", store).error(2)
    result = invoke("undeploy", "tiny", "--version", "\u00b2", "--target", target, "--store", store)
    assert "must be a positive integer" in result.error(2)


def test_a_report_naming_a_bad_model_is_exit_3(tiny_build: Path) -> None:
    path = tiny_build / "report.json"
    report = json.loads(path.read_text())
    report["name"] = "tiny\n"
    path.write_text(json.dumps(report))
    assert "not usable as a folder and server name" in invoke("verify", str(tiny_build)).error(3)


GROUP = {"yolov8n", "yolov8n_preprocess", "yolov8n_postprocess", "yolov8n_ensemble"}
DETECTION = ["m_preprocess", "m", "m_postprocess", "m_ensemble"]


@pytest.mark.parametrize(
    "names, base, index, refused",
    [
        (["yolov8n_preprocess"], "yolov8n_preprocess", GROUP, "a step of yolov8n's ensemble"),
        (["yolov8n_ensemble"], "yolov8n_ensemble", GROUP | {"tiny"}, "a step of yolov8n's ensemble"),
        (DETECTION, "m", {"m_postprocess", "tiny"}, "m_postprocess on http://h is another model's entry"),
        (["tiny"], "tiny", GROUP | {"tiny"}, None),  # a redeploy
        (DETECTION, "m", GROUP | set(DETECTION), None),  # the same detection model again
        (["yolov8n"], "yolov8n", GROUP, None),  # the detector's own name, deployed again
        (["x_preprocess"], "x_preprocess", {"x_preprocess", "x_ensemble"}, None),  # no complete group of x
        (["m", "m_ensemble"], "m", {"m", "m_ensemble"}, None),  # the one-instance layout again (python backend)
        (DETECTION, "m", {"m", "m_ensemble"}, None),  # a native backend now, after the python backend's layout
        (["m_ensemble"], "m_ensemble", {"m", "m_ensemble"}, "a step of m's ensemble"),  # m's endpoint, by name
        (["m", "m_ensemble"], "m", {"m_ensemble", "tiny"}, "m_ensemble on http://h is another model's entry"),
    ],
)
def test_triton_deploy_refuses_another_models_ensemble_steps(
    names: list[str], base: str, index: set[str], refused: str | None
) -> None:
    from packager.targets.triton.deploy import refuse_collisions

    if refused is None:
        refuse_collisions(names, base, index, "http://h")
        return
    with pytest.raises(UsageError, match=refused) as caught:
        refuse_collisions(names, base, index, "http://h")
    assert caught.value.exit_code == 2
