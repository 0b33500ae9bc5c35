"""Reading a migration source's .mar manifest without running its code: handler kinds map to tasks, archive code is
refused without trust (exit 2), and manifests naming missing members or lacking fields are refused (exit 3)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from packager.errors import UsageError, ValidationFailed
from packager.migrate.sources import MANIFEST, read_mar, require_trust


def make_mar(tmp_path: Path, model: dict[str, object], members: tuple[str, ...] = ("model.pt",)) -> Path:
    path = tmp_path / "m.mar"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(MANIFEST, json.dumps({"model": model}))
        for name in members:
            zf.writestr(name, b"x")
    return path


def test_torchscript_builtin_needs_no_trust(tmp_path: Path) -> None:
    src = read_mar(make_mar(tmp_path, {"handler": "image_classifier", "serializedFile": "model.pt"}))
    assert (src.task, src.torchscript, src.archive_code) == ("classification", True, [])
    require_trust(src, trusted=False)


def test_eager_model_file_is_archive_code(tmp_path: Path) -> None:
    mar = make_mar(
        tmp_path, {"handler": "object_detector", "serializedFile": "model.pt", "modelFile": "net.py"}, ("model.pt", "net.py")
    )
    src = read_mar(mar)
    assert (src.task, src.torchscript) == ("detection", False)
    with pytest.raises(UsageError, match="net.py") as err:
        require_trust(src, trusted=False)
    assert err.value.exit_code == 2
    assert "--trust-archive-code" in err.value.line()
    require_trust(src, trusted=True)


def test_custom_handler_is_generic_and_needs_trust(tmp_path: Path) -> None:
    src = read_mar(make_mar(tmp_path, {"handler": "h.py", "serializedFile": "model.pt"}, ("model.pt", "h.py")))
    assert (src.task, src.archive_code) == ("generic", ["h.py"])
    with pytest.raises(UsageError):
        require_trust(src, trusted=False)


@pytest.mark.parametrize(
    "model, members, words",
    [
        ({"handler": "image_classifier", "serializedFile": "gone.pt"}, ("model.pt",), "'gone.pt'"),
        ({"handler": "h.py", "serializedFile": "model.pt"}, ("model.pt",), "'h.py'"),
        ({"serializedFile": "model.pt"}, ("model.pt",), "handler"),
        ({"handler": "image_classifier", "serializedFile": 3}, ("model.pt",), "serializedFile"),
    ],
)
def test_bad_manifest_is_exit_3(tmp_path: Path, model: dict[str, object], members: tuple[str, ...], words: str) -> None:
    with pytest.raises(ValidationFailed, match=words) as err:
        read_mar(make_mar(tmp_path, model, members))
    assert err.value.exit_code == 3


def test_no_manifest_is_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "m.mar"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.pt", b"x")
    with pytest.raises(ValidationFailed, match="MANIFEST"):
        read_mar(path)
