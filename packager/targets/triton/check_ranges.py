"""Value ranges of a config.pbtxt that protobuf alone accepts but a server should never be given: instance counts,
max_batch_size, tensor dims, dynamic batching sizes and delays. Each bound is one a real deployment stays far inside;
a value outside it is an error naming the model, the field and the value (`pack check-repo` exits 3)."""

from __future__ import annotations

from typing import Any

from ...serve.settings import SETTINGS
from .check_model import EntryChecker

# the server settings' own ranges (packager/serve/settings.py), in config.pbtxt's units
MAX_INSTANCES = SETTINGS["workers"].high  # instance_group count: model copies in one server process
MAX_BATCH = SETTINGS["batch_size"].high  # max_batch_size and preferred_batch_size
MAX_DIM = (1 << 31) - 1  # a tensor dimension (Triton reads int64; no real tensor comes near)
MAX_DELAY_US = SETTINGS["max_batch_delay_ms"].high * 1000  # dynamic batching delays: a minute of queueing is no service
MAX_THREADS = SETTINGS["threads"].high  # onnxruntime intra-op / torch threads per model instance
MAX_PRIORITY = 1 << 16


def check_ranges(chk: EntryChecker) -> None:
    config = chk.config
    for i, group in enumerate(config.instance_group):
        if not 0 <= group.count <= MAX_INSTANCES:  # 0: not set (Triton creates 1)
            chk.add(f"instance_group[{i}].count", group.count, f"it must be 1 to {MAX_INSTANCES}")
    if not 0 <= config.max_batch_size <= MAX_BATCH:
        chk.add("max_batch_size", config.max_batch_size, f"it must be 0 to {MAX_BATCH}")
    for kind, tensors in (("input", config.input), ("output", config.output)):
        for entry in tensors:
            _check_dims(chk, f"{kind} {entry.name}.dims", entry.dims)
            if entry.HasField("reshape"):
                _check_dims(chk, f"{kind} {entry.name}.reshape.shape", entry.reshape.shape)
    if config.HasField("dynamic_batching"):
        _check_batcher(chk, config.dynamic_batching)


def _check_dims(chk: EntryChecker, field: str, dims: Any) -> None:
    for d in dims:
        if d != -1 and not 1 <= d <= MAX_DIM:
            chk.add(field, d, f"a dimension must be -1 (variable) or 1 to {MAX_DIM}")
            return


def _check_batcher(chk: EntryChecker, batcher: Any) -> None:
    for size in batcher.preferred_batch_size:
        if not 1 <= size <= MAX_BATCH:
            chk.add("dynamic_batching.preferred_batch_size", size, f"it must be 1 to {MAX_BATCH}")
    if batcher.max_queue_delay_microseconds > MAX_DELAY_US:
        chk.add(
            "dynamic_batching.max_queue_delay_microseconds",
            batcher.max_queue_delay_microseconds,
            f"it must be 0 to {MAX_DELAY_US:,d}",
        )
    policy = batcher.default_queue_policy
    if policy.default_timeout_microseconds > MAX_DELAY_US:
        chk.add(
            "dynamic_batching.default_queue_policy.default_timeout_microseconds",
            policy.default_timeout_microseconds,
            f"it must be 0 to {MAX_DELAY_US:,d}",
        )
    if batcher.priority_levels > MAX_PRIORITY:
        chk.add("dynamic_batching.priority_levels", batcher.priority_levels, f"it must be 0 to {MAX_PRIORITY}")
