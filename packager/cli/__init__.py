"""The `pack` command line (entry point `pack = packager.cli:main`): the group and every command registered on it
(each command module registers its commands when imported, which the group does when a command is first asked for:
app.py COMMAND_MODULES)."""

from __future__ import annotations

from .app import main

__all__ = ["main"]
