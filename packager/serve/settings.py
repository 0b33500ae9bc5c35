"""The server settings, each declared once: its one name (the deploy option's, the one `pack tune` searches and
records, the one a bench row reports), its flag, its range and its help; and the one rule that gives a setting its
value: the flag when given, else what the build recorded (or `pack tune` chose), else the default.

The CLI builds every command's flag for a setting from here (`pack deploy`, `archive`, `repo`, `bench`), and a target
translates the values into its own server's words (Triton's `instance_group.count`, TorchServe's `minWorkers`) inside
its own package; nothing renames a setting on the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class Setting:
    name: str
    flag: str
    low: int
    high: int
    help: str

    def describe(self) -> str:
        """The option's help: what the setting is, and its range."""
        return f"{self.help} ({self.low} to {self.high})."

    def check(self, value: int) -> int:
        """`value` when it lies in the setting's range; one line naming the flag otherwise (exit 2)."""
        if not self.low <= int(value) <= self.high:
            raise UsageError(f"{self.flag} {value} is out of range", f"use {self.low} to {self.high}")
        return int(value)


SETTINGS = {
    s.name: s
    for s in (
        Setting("workers", "--workers", 1, 256, "Worker processes, or model instances, serving the model"),
        Setting("batch_size", "--batch-size", 0, 1 << 16, "Server-side batch size; 0: no batching, where the server has that"),
        Setting("max_batch_delay_ms", "--max-batch-delay", 0, 60_000, "Milliseconds to wait to fill a batch"),
        Setting(
            "threads", "--threads", 0, 1024, "onnxruntime intra-op (or torch) threads per worker or instance; 0: its default"
        ),
    )
}


def resolve(given: Mapping[str, Any], recorded: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Each setting named in any of the three: the flag when given (checked against its range), else the recorded
    value (what the build records, or what `pack tune` chose), else the default. None counts as not given."""
    out: dict[str, Any] = {}
    for name in {**defaults, **recorded, **given}:
        if given.get(name) is not None:
            out[name] = SETTINGS[name].check(given[name]) if name in SETTINGS else given[name]
        elif recorded.get(name) is not None:
            out[name] = recorded[name]
        elif defaults.get(name) is not None:
            out[name] = defaults[name]
    return out


__all__ = ["SETTINGS", "Setting", "resolve"]
