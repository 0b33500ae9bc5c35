"""Private links of a local server (packager/serve/local.py): a short or plain path to a folder of the server, from a
fresh private folder (mode 0700) under /tmp, for what a server cannot take at its real path (Unix socket paths,
spaces); recorded in `<root>/<name>-link` and removed when the server is forgotten."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from ..errors import EnvironmentProblem

LINK_SUFFIX = "-link"  # `<root>/<name>-link` holds the path of a private link (PrivateLinks.private_link)


class PrivateLinks:
    """The private links of a server whose folder is `root` (a part of LocalServer)."""

    kind: ClassVar[str]
    root: Path

    def forget_links(self) -> None:
        """Remove the links pack made, never what they point to."""
        for record in self.root.glob(f"*{LINK_SUFFIX}") if self.root.is_dir() else []:
            link = self.private_path(record.name.removesuffix(LINK_SUFFIX))
            if link is not None and link.is_symlink() and link.parent.name.startswith("pack-"):
                link.unlink()
                with contextlib.suppress(OSError):
                    link.parent.rmdir()
            record.unlink(missing_ok=True)

    def private_path(self, name: str) -> Path | None:
        """The private link `name` recorded for this server, if any."""
        try:
            return Path((self.root / f"{name}{LINK_SUFFIX}").read_text().strip() or "-")
        except OSError:
            return None

    def private_link(self, name: str, target: Path, fits: Callable[[str], bool], problem: tuple[str, str]) -> Path:
        """`target`, or when its path does not `fit` what the server takes, a symlink `name` to it from a fresh
        private folder (mode 0700, a name no one else can take) under /tmp, recorded in `<root>/<name>-link` and
        removed by `forget`. `problem` (what, what to do) is raised when even that path does not fit."""
        if fits(str(target)):
            return target
        known = self.private_path(name)
        if known is not None and known.is_symlink() and known.resolve() == target.resolve():
            return known
        link = Path(tempfile.mkdtemp(prefix=f"pack-{self.kind}-", dir=_short_temp_root())) / name
        if not fits(str(link)):
            link.parent.rmdir()
            raise EnvironmentProblem(*problem)
        link.symlink_to(target, target_is_directory=True)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"{name}{LINK_SUFFIX}").write_text(str(link))
        return link


def _short_temp_root() -> str | None:
    """Where private folders go: the system's /tmp when it is a writable folder (TMPDIR may itself be the long path,
    as under a test runner or a CI workspace), else Python's temporary folder."""
    return "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK | os.X_OK) else None
