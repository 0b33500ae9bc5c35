"""A target's options: dataclasses whose fields carry their command-line flag (`cli_field`), so a target's flags live
with the target; the CLI builds its options from them and refuses a flag of another target. A server setting's field
takes the flag, help and range the setting is declared with, once (`setting_field`, packager/serve/settings.py).
No registry here: a target's own modules take their options' types from this module, not from the registry's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..serve.settings import SETTINGS


def cli_field(
    default: Any,
    flag: str,
    help: str,
    *,
    type: Any = None,
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None,
    is_flag: bool = False,
    commands: tuple[str, ...] = ("deploy",),
) -> Any:
    """A dataclass field that is also a command-line option of the given commands (`choices` may be a function that
    the CLI calls once every target is registered: choices drawn from the registry)."""
    meta = {"flag": flag, "help": help, "type": type, "choices": choices, "is_flag": is_flag, "commands": commands}
    return field(default=default, metadata={"cli": meta})


def setting_field(name: str) -> Any:
    """A field for one of the server settings, with the flag and help they are declared with (serve/settings.py)."""
    setting = SETTINGS[name]
    return cli_field(None, setting.flag, setting.describe(), type=int)


SERVER = ("deploy", "status", "undeploy")  # the commands that talk to a server


@dataclass
class DeployOptions:
    """What every target's commands may read; each target's own options (a subclass) say which are command-line
    options for it (`cli_field`)."""

    store: Path
    format: str | None = cli_field(None, "--format", "Which export to serve (default: onnx when it passed).")
    url: str | None = None
    timeout: float = 180.0
    workers: int | None = None
    batch_size: int | None = None
    max_batch_delay_ms: int | None = None
    threads: int | None = None
    token_file: str | None = None
    server_binary: str | None = None
    backend: str | None = None
    host: str = "127.0.0.1"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServerOptions(DeployOptions):
    """Options of a target that launches or talks to a server."""

    url: str | None = cli_field(None, "--url", "Use a running server at this URL instead of launching one.", commands=SERVER)
    timeout: float = cli_field(180.0, "--timeout", "Seconds to wait for the server and the model.", type=float, commands=SERVER)
    workers: int | None = setting_field("workers")
    batch_size: int | None = setting_field("batch_size")
    max_batch_delay_ms: int | None = setting_field("max_batch_delay_ms")
    threads: int | None = setting_field("threads")
    repair: bool = cli_field(
        False,
        "--repair",
        "Reload every deployed model whose build sample is answered wrong or not at all, then probe it again.",
        is_flag=True,
        commands=("status",),
    )


def cli_fields(options: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(options) if "cli" in f.metadata]


__all__ = ["SERVER", "DeployOptions", "ServerOptions", "cli_field", "cli_fields", "setting_field"]
