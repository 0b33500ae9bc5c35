"""The build cache: a rebuild from unchanged inputs reuses the gated artifacts of the build that made them.

The key is the sha256 of everything that decides a build's bytes and its gate (`key_components`): the resolved plan
(formats, inputs, batch sizes, tolerances, seed, variants, version, name, ...), the model source's digest (a checkpoint's
bytes; a factory's file, every Python file of its own it imported, and the state_dict it returns, since a factory
may read anything), the weights file's and a calibration file's digests, pack's version and a digest of pack's own source, every
installed distribution's name and version (torch, onnx, onnxruntime, the model's libraries), Python, the machine, the
device, and the build's options (iterations, measurement budget, the targets' packaging steps).

An entry is the finished build folder before it is signed, stored atomically under `<cache>/<key>`. A hit copies (or
hard-links) every file after checking it against the digest the entry's report recorded; a file that does not match
drops the entry and the build runs in full. Only a build that passed is stored; a failed one leaves nothing here.
The cache lives in `<store>/.cache` unless `--cache DIR` or `PACK_CACHE` names another folder; `--no-cache` builds in
full and stores nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import site
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..report.files import sha256_file
from ..report.store import link_or_copy, remove_leftovers

if TYPE_CHECKING:
    from ..report.build_report import BuildReport

logger = logging.getLogger(__name__)

CACHE_ENV = "PACK_CACHE"
FOLDER = ".cache"
MAX_SOURCE_FILES = 2000  # a model importing more Python files of its own than this is not keyed (nor cached)
PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_SOURCES = ("packager", "handlers", "templates")
PACK_FILES = ("*.py", "*.json", "*.yaml", "*.txt", "*.j2", "*.md")


class Unkeyable(Exception):
    """The build's inputs cannot be keyed safely (the build runs in full and is not stored)."""


def cache_dir(store: Path, option: str | None, enabled: bool) -> Path | None:
    """Where this build's cache is: --cache DIR, else PACK_CACHE, else `<store>/.cache`; None with --no-cache."""
    if not enabled:
        return None
    return Path(option or os.environ.get(CACHE_ENV) or Path(store) / FOLDER)


def trusted(cache: Path) -> bool:
    """A cache is as trusted as the store: an entry's digests prove only that it is whole, not who wrote it. A folder
    that another user owns or that others may write is not used (a warning says why)."""
    try:
        info = cache.stat()
    except FileNotFoundError:
        return True  # made by this build, private (store())
    except OSError as exc:
        logger.warning(f"the build cache {cache} is not used ({exc})")
        return False
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        logger.warning(
            f"the build cache {cache} is not used: another user owns it or others may write to it "
            "(chmod go-w it, or point --cache at a folder of your own)"
        )
        return False
    return True


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _tree_digest(root: Path, patterns: tuple[str, ...]) -> str:
    """sha256 over (relative path, bytes) of every matching file under `root`, caches and hidden folders left out."""
    digest, count = hashlib.sha256(), 0
    for pattern in patterns:
        for path in sorted(root.rglob(pattern)):
            rel = path.relative_to(root)
            if not path.is_file() or any(p.startswith(".") or p == "__pycache__" for p in rel.parts[:-1]):
                continue
            count += 1
            if count > MAX_SOURCE_FILES:
                raise Unkeyable(f"more than {MAX_SOURCE_FILES} source files under {root}")
            digest.update(f"{rel.as_posix()}|{path.stat().st_size}|".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def pack_source_digest() -> str:
    """pack's own code: a developer's edit (or another checkout) never reuses a build the old code made."""
    digest = hashlib.sha256()
    for name in PACK_SOURCES:
        if (PACK_ROOT / name).is_dir():
            digest.update(f"{name}:{_tree_digest(PACK_ROOT / name, PACK_FILES)}".encode())
    return digest.hexdigest()


@functools.cache
def distributions() -> str:
    """Every installed distribution's name and version (torch, onnx, onnxruntime, the model's own libraries)."""
    names = sorted({f"{d.metadata['Name']}=={d.version}".lower() for d in metadata.distributions() if d.metadata["Name"]})
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def device_probe(requested: str) -> str:
    """The device a build would pick, without importing torch: the request and the GPUs the driver shows."""
    if requested == "cpu":
        return "cpu"
    gpus = Path("/proc/driver/nvidia/gpus")
    seen = sorted(p.name for p in gpus.iterdir()) if gpus.is_dir() else []
    return f"{requested}; gpus {','.join(seen) or 'none'}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}"


def user_modules() -> list[str]:
    """The Python files this process imported from outside the interpreter's installation and pack itself: a
    factory's own code and the modules it imports from its project (libraries are keyed by their versions)."""
    installed = {Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}}
    installed |= {PACK_ROOT / name for name in PACK_SOURCES}
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not path.endswith(".py"):
            continue
        resolved = Path(path).resolve()
        if resolved.is_file() and not any(resolved.is_relative_to(root) for root in installed):
            files.add(str(resolved))
    if len(files) > MAX_SOURCE_FILES:
        raise Unkeyable(f"the model imported more than {MAX_SOURCE_FILES} Python files of its own")
    return sorted(files)


def key_components(
    plan: Any, options: dict[str, Any], state_dict: str | None = None, modules: list[str] | None = None
) -> dict[str, Any]:
    """Everything the key is made of (each one changed gives another key: tests/unit/test_cache_key.py)."""
    fields = {f.name: _plain(getattr(plan, f.name)) for f in dataclasses.fields(plan) if f.name != "entry"}
    components: dict[str, Any] = {"plan": fields, "entry": plan.entry.name if plan.entry is not None else None}
    if plan.source_kind == "file":
        components["source"] = sha256_file(plan.source)
    elif plan.source_kind == "python":
        factory = Path(plan.source.rpartition(":")[0])
        components["source"] = sha256_file(factory)
        components["modules"] = {path: sha256_file(path) for path in modules or []}  # what the factory imported
        components["state_dict"] = state_dict
    if plan.weights:
        components["weights"] = sha256_file(plan.weights)
    calibration = getattr(plan.variants, "calibration", None)
    if calibration:
        components["calibration"] = sha256_file(calibration)
    from .. import __version__

    components.update(
        pack=__version__,
        pack_source=pack_source_digest(),
        distributions=distributions(),
        python=platform.python_version(),
        machine=platform.machine(),
        device=device_probe(plan.device),
        options=_plain(options),
    )
    return components


def make_key(components: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(components, sort_keys=True, default=repr).encode()).hexdigest()


def restore(cache: Path, key: str, folder: Path) -> BuildReport | None:
    """Fill `folder` from the entry of `key` when every file matches its recorded digest; the entry's report, or None
    (no entry, or one that no longer matches: dropped, so the build runs and stores a good one)."""
    from ..errors import PackError
    from ..report.build_report import BuildReport
    from ..report.integrity import require_intact

    entry = cache / key
    if not (entry / "report.json").is_file() or not trusted(cache):
        return None
    try:
        report = BuildReport.load(entry)
        require_intact(entry, report)  # the checks every serving command makes: digests, no link, no path outside
        for rel in report.sha256:
            link_or_copy(entry / rel, folder / rel)
    except (PackError, OSError) as exc:
        logger.warning(f"the cached build {key[:16]} is not usable ({exc}); building in full")
        for child in list(folder.iterdir()):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        shutil.rmtree(entry, ignore_errors=True)
        return None
    return report


def store(cache: Path, key: str, folder: Path) -> None:
    """Keep a copy of the passed build `folder` under `key`: written beside, renamed into place (another build that
    stored the same key first wins; both are the same build)."""
    entry = cache / key
    if entry.exists() or not trusted(cache):
        return
    tmp = cache / f".tmp-{key[:16]}-{os.getpid()}"
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        remove_leftovers(cache, ".tmp-")  # what a killed build left while storing
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                link_or_copy(path, tmp / path.relative_to(folder))
        os.rename(tmp, entry)
    except OSError as exc:
        if not entry.exists():
            logger.warning(f"the build was not cached ({exc})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["CACHE_ENV", "Unkeyable", "cache_dir", "key_components", "make_key", "restore", "store", "trusted"]
