"""The server settings, each declared once (packager/serve/settings.py): one rule gives a setting its value (the flag,
else what the build recorded or `pack tune` chose, else the default), one range refuses a value out of it in one
line naming the flag (exit 2), and every command's flag for a setting is that declaration's."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from packager.errors import UsageError
from packager.serve.settings import SETTINGS, resolve
from tests.helpers.cli import command_named, invoke


def test_the_flag_wins_then_the_record_then_the_default() -> None:
    defaults = {"workers": 1, "batch_size": 8, "format": "onnx"}
    assert resolve({}, {}, defaults) == defaults
    assert resolve({"workers": None}, {"workers": 2, "threads": 3}, defaults) == {**defaults, "workers": 2, "threads": 3}
    assert resolve({"workers": 4, "batch_size": 0}, {"workers": 2}, defaults) == {**defaults, "workers": 4, "batch_size": 0}
    assert resolve({"format": "torchscript"}, {}, defaults)["format"] == "torchscript"  # not a server setting: as given


@pytest.mark.parametrize(
    "name, bad", [("workers", 0), ("workers", 257), ("batch_size", -1), ("max_batch_delay_ms", 60_001), ("threads", 1025)]
)
def test_a_given_value_out_of_its_range_is_one_line(name: str, bad: int) -> None:
    setting = SETTINGS[name]
    with pytest.raises(UsageError) as caught:
        resolve({name: bad}, {}, {name: setting.low})
    assert caught.value.line() == f"{setting.flag} {bad} is out of range; use {setting.low} to {setting.high}"
    assert resolve({}, {name: bad}, {}) == {name: bad}  # a recorded value is the target's to check, not the flag's


def _option(command: str, flag: str) -> click.Option:
    found = [p for p in command_named(command).params if isinstance(p, click.Option) and flag in p.opts]
    assert len(found) == 1, (command, flag)
    return found[0]


@pytest.mark.parametrize("command", ["deploy", "archive", "repo", "bench"])
def test_every_command_takes_a_setting_as_it_is_declared(command: str) -> None:
    for setting in SETTINGS.values():
        option = _option(command, setting.flag)
        assert option.name == setting.name, (command, setting.flag)  # one name from the flag on
        assert (option.help or "").startswith(setting.describe()), (command, setting.flag, option.help)


def test_pack_repo_keeps_its_older_spellings_of_the_same_settings() -> None:
    assert set(_option("repo", "--workers").opts) == {"--workers", "--instances"}
    assert set(_option("repo", "--batch-size").opts) == {"--batch-size", "--max-batch"}


@pytest.mark.parametrize(
    "args",
    [
        ("deploy", "--target", "triton", "--threads", "5000"),
        ("deploy", "--target", "torchserve", "--threads", "5000"),
        ("archive", "--threads", "5000"),
        ("repo", "--threads", "5000"),
        ("bench", "--threads", "5000"),
    ],
)
def test_one_range_for_threads_in_every_command(tiny_store: Path, args: tuple[str, ...]) -> None:
    line = invoke(args[0], "tiny", "--store", str(tiny_store), *args[1:]).error(2)
    assert "--threads 5000 is out of range; use 0 to 1024" in line, line


def test_a_bench_setting_out_of_range_is_refused_before_anything_runs(tmp_path: Path) -> None:
    line = invoke("bench", "tiny", "--store", str(tmp_path), "--workers", "0").error(2)
    assert "--workers 0 is out of range; use 1 to 256" in line, line
    assert not list(tmp_path.iterdir())  # nothing was built or launched
