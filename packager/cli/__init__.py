"""The `pack` command line (entry point `pack = packager.cli:main`): the group and every command registered on it
(each command module registers its commands when imported)."""

from __future__ import annotations

from . import bench, check, optimize, serve, sign, tune  # noqa: F401  (register their commands on the group)
from .app import main

__all__ = ["main"]
