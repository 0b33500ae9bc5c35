"""One place for every project setting: the `all` extra is the union of the others (setup.cfg cannot derive it), the tested
torch and torchvision are pinned in constraints.txt alone (scripts/setup.sh and tox.ini install through it), and tox
runs the suite in the workers scripts/test.sh names. Each check is shown failing on a made-up file."""

from __future__ import annotations

import configparser
import re

from tests.helpers import ROOT

NOT_IN_ALL = {"gpu"}  # onnxruntime-gpu replaces onnxruntime: installed on its own


def extras(setup_cfg: str) -> dict[str, set[str]]:
    parser = configparser.ConfigParser()
    parser.read_string(setup_cfg)
    section = parser["options.extras_require"]
    return {name: {line.strip() for line in section[name].splitlines() if line.strip()} for name in section}


def all_but_the_union(setup_cfg: str) -> tuple[set[str], set[str]]:
    """(what the other extras need that `all` lacks, what `all` has that no other extra names)."""
    found = extras(setup_cfg)
    union = set().union(*(reqs for name, reqs in found.items() if name != "all" and name not in NOT_IN_ALL))
    return union - found["all"], found["all"] - union


def test_all_is_the_union_of_the_other_extras() -> None:
    assert all_but_the_union((ROOT / "setup.cfg").read_text()) == (set(), set())
    made_up = "[options.extras_require]\nplot =\n matplotlib\nyolo =\n ultralytics\ngpu =\n x\nall =\n ultralytics\n extra\n"
    assert all_but_the_union(made_up) == ({"matplotlib"}, {"extra"})


PIN = re.compile(r"\b(torch|torchvision)==")


def pinned_outside(files: dict[str, str]) -> list[str]:
    return [name for name, text in files.items() if PIN.search(text)]


def test_the_torch_pin_lives_in_constraints_txt_alone() -> None:
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if PIN.match(line)]
    assert [p.split("==")[0] for p in pins] == ["torch", "torchvision"]
    readers = {name: (ROOT / name).read_text() for name in ("scripts/setup.sh", "tox.ini")}
    others = {name: (ROOT / name).read_text() for name in ("setup.cfg", "pyproject.toml", "README.md", ".ci/run")}
    assert pinned_outside({**readers, **others}) == []
    assert all("constraints.txt" in text for text in readers.values())
    assert pinned_outside({"tox.ini": "deps =\n    torch==2.14.1\n"}) == ["tox.ini"]


def workers(text: str) -> list[tuple[str, str]]:
    """(default worker count, --dist mode) of every xdist run a script or tox.ini states."""
    pattern = r'-n\s+"?(?:\$\{PACK_TEST_WORKERS:-|\{env:PACK_TEST_WORKERS:)(\d+)\}"?\s+--dist\s+(\w+)'
    return re.findall(pattern, text)


def test_tox_runs_the_suite_in_the_workers_the_test_command_names() -> None:
    script = workers((ROOT / "scripts" / "test.sh").read_text())
    tox = workers((ROOT / "tox.ini").read_text())
    assert len(script) == 1 and tox and set(tox) == set(script)
    assert set(workers("-n {env:PACK_TEST_WORKERS:2} --dist load")) != set(script)
