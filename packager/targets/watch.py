"""The watcher process of a server pack launched (`python -m packager.targets.watch`), and its start after a deploy.

The watcher itself (its rounds, back-off, log, state and stop) is packager/serve/watcher.py, which knows no target;
this module hands it the one thing it needs of a target: `pack status` (with `--repair` when asked) of the target
named on its command line, reached through the registry like every command reaches it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..serve import watcher
from ..serve.local import LocalServer
from .options import ServerOptions


def start(server: LocalServer, target: str, launched: bool) -> None:
    """After a deploy to a server pack launched (by this deploy when `launched`): its watcher runs, unless PACK_WATCH=0
    was set at the server's launch."""
    watcher.start(server, target, __name__, launched)


def _check(target: str, store: Path) -> watcher.Check:
    from .base import get_target

    chosen = get_target(target)

    def check(repair: bool) -> dict[str, Any]:
        opts = chosen.Options(store=store, timeout=watcher.REPAIR_TIMEOUT_S if repair else watcher.CHECK_TIMEOUT_S)
        if isinstance(opts, ServerOptions):  # a target whose options take no --repair is only probed
            opts.repair = repair
        return chosen.status(opts)

    return check


def main(argv: list[str] | None = None) -> int:
    return watcher.main(argv, _check)


if __name__ == "__main__":
    sys.exit(main())
