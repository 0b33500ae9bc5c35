"""The one gate for model names and versions: every command (build, its spec, deploy, archive, repo, undeploy, bench)
checks a name and a version here before using it as a folder, a server entry or a URL part.

A name is 1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit: no path separator, no
control character (a trailing newline included), nothing a server or a file system reads differently. A version is a
positive integer of ASCII digits up to VERSION_MAX (999,999,999, the bound report.json's schema also holds): Triton
keeps versions as int64 folder names and aborts on one it cannot parse, TorchServe takes any string, so pack keeps
both to the range both accept.
"""

from __future__ import annotations

import re

from ..errors import UsageError

NAME_MAX = 64
VERSION_MAX = 999_999_999
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,9}", re.ASCII)


def check_name(name: object, what: str = "model name") -> str:
    """`name` when it is a usable model name; UsageError (exit 2) naming the rule otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name)[:80]
        raise UsageError(
            f"{what} {shown} is not usable as a folder and server name",
            f"use 1 to {NAME_MAX} ASCII letters, digits, '.', '_' or '-', starting with a letter or digit (--name)",
        )
    return name


def check_version(version: object) -> str:
    """The canonical form ('7', not '007') of a version when it is an integer from 1 to VERSION_MAX; UsageError (exit 2)
    otherwise (a unicode digit such as '²', a sign, spaces, a number too large for a server)."""
    text = str(version) if isinstance(version, int) and not isinstance(version, bool) else version
    stripped = text.lstrip("0") if isinstance(text, str) else None
    if stripped is None or not _DIGITS.fullmatch(stripped or "0") or not 1 <= int(stripped or "0") <= VERSION_MAX:
        raise UsageError(
            f"version {str(version)[:40]!r} must be a positive integer up to {VERSION_MAX:,d}",
            "pass --version N with 1 <= N <= 999999999 (TorchServe and Triton both accept those)",
        )
    return str(int(stripped))


def is_version(text: str) -> bool:
    """Whether `text` is a version folder name pack writes (ASCII digits, no leading zero, within range)."""
    return bool(_DIGITS.fullmatch(text)) and not text.startswith("0")


__all__ = ["NAME_MAX", "VERSION_MAX", "check_name", "check_version", "is_version"]
