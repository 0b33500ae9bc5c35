"""Option values checked before a command runs (packager/cli/app.py): every float option is a finite number within its
bounds (`Number`; click's FloatRange alone let `nan` through), whatever click refuses is pack's one `error:` line with
exit 2, and a --url that no URL parser reads is bad input, not a crash."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from packager.cli.app import SECONDS, Number
from tests.helpers.cli import invoke


@pytest.mark.parametrize(
    "args, flag",
    [
        (["build", "tiny", "--atol", "nan"], "--atol"),
        (["build", "tiny", "--atol", "-1"], "--atol"),
        (["build", "tiny", "--rtol", "inf"], "--rtol"),
        (["build", "tiny", "--measure-budget", "nan"], "--measure-budget"),
        (["build", "tiny", "--min-speedup", "nan"], "--min-speedup"),
        (["optimize", "tiny", "--variants", "int8-dynamic", "--min-speedup", "nan"], "--min-speedup"),
        (["optimize", "tiny", "--variants", "int8-dynamic", "--min-speedup", "-inf"], "--min-speedup"),
        (["deploy", "tiny", "--timeout", "nan"], "--timeout"),
        (["deploy", "tiny", "--timeout", "-1"], "--timeout"),
        (["deploy", "tiny", "--timeout", "1e300"], "--timeout"),
        (["status", "--timeout", "nan"], "--timeout"),
        (["undeploy", "tiny", "--timeout", "inf"], "--timeout"),
        (["bench", "tiny", "--timeout", "nan"], "--timeout"),
        (["bench", "tiny", "--time-limit", "nan"], "--time-limit"),
        (["tune", "tiny", "--target", "triton", "--p99-ms", "nan"], "--p99-ms"),
        (["tune", "tiny", "--target", "triton", "--budget-s", "nan"], "--budget-s"),
        (["tune", "tiny", "--target", "triton", "--window-s", "inf"], "--window-s"),
    ],
)
def test_float_options_refuse_nan_inf_and_out_of_range(tmp_path: Path, args: list[str], flag: str) -> None:
    """Before: `--min-speedup nan` was accepted and kept every variant; `--timeout nan` or `-1` was exit 1."""
    line = invoke(*args, "--store", str(tmp_path / "store")).error(2)
    assert line.startswith(f"error: invalid value for '{flag}'") and f"{args[0]} --help" in line, line


def test_number_accepts_finite_values_within_its_bounds() -> None:
    assert Number(min=0).convert("1.5", None, None) == 1.5
    assert Number(0, 10).convert(3, None, None) == 3.0
    assert SECONDS.convert("0.5", None, None) == 0.5
    for value in ("nan", "inf", "-inf", "0", "86401", "x"):
        with pytest.raises(click.BadParameter):
            SECONDS.convert(value, None, None)


@pytest.mark.parametrize(
    "args, words",
    [
        (["build", "tiny", "--no-such-option"], "no such option '--no-such-option'"),
        (["no-such-command"], "no such command 'no-such-command'"),
        (["verify"], "missing argument 'TARGET'"),
        (["build", "tiny", "--iterations", "-1"], "invalid value for '--iterations'"),
        (["build", "tiny", "--device", "tpu"], "invalid value for '--device'"),
    ],
)
def test_what_click_refuses_is_one_error_line_with_exit_2(args: list[str], words: str) -> None:
    result = invoke(*args)
    line = result.error(2)
    assert words in line and "--help`" in line and "Usage:" not in result.stderr, result.stderr


def test_pack_alone_still_prints_its_help() -> None:
    result = invoke()
    assert "Usage:" in result.stdout + result.stderr and "error:" not in result.stderr


@pytest.mark.parametrize(
    "url, problem",
    [("http://[::1", "Invalid IPv6 URL"), ("http://127.0.0.1:99999", "Port out of range"), ("http://h:port", "Port")],
)
def test_a_url_no_parser_reads_is_bad_input(tmp_path: Path, url: str, problem: str) -> None:
    """Before: ValueError from urllib, exit 1."""
    line = invoke("status", "--target", "triton", "--url", url, "--store", str(tmp_path)).error(2)
    assert f"{url!r} is not a usable URL" in line and problem in line, line
