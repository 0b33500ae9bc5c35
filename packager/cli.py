"""The `pack` command line (entry point `pack = packager.cli:main`): the group and every command registered on it."""

from __future__ import annotations

from . import cli_bench, cli_optimize, cli_serve, cli_sign, cli_tune  # noqa: F401  (register their commands on the group)
from .cli_app import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
