"""What both tiers' build-error tests write and check: a user's model file, and a store a failed build left clean."""

from __future__ import annotations

import textwrap
from pathlib import Path


def no_leftovers(store: Path, name: str = "tiny") -> None:
    """A failed build leaves nothing in the model's store folder but its lock."""
    folder = store / name
    if folder.exists():
        assert [p.name for p in folder.iterdir() if p.name != ".lock"] == []


def model_file(tmp_path: Path, body: str) -> str:
    """Write `body` (dedented) as tmp_path/m.py; its path."""
    path = tmp_path / "m.py"
    path.write_text(textwrap.dedent(body))
    return str(path)
