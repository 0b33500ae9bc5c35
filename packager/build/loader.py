"""Turn a BuildPlan's source into an eval-mode nn.Module: built-in factory, file.py:callable, or a model file.

Weights load with `torch.load(weights_only=True)` unless the user passed --unsafe-load; every failure becomes one
readable UsageError (what is wrong with which file, what to do).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
import zipfile
from pathlib import Path
from typing import Any

from ..console import on_purpose
from ..errors import UsageError
from ..registry import ModelEntry, get_entry
from ..report.build_report import sha256_file
from .plan import BuildPlan

UNSAFE_HINT = "if you trust this file, pass --unsafe-load (it runs code from the file while loading)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def torch_load(path: str, unsafe: bool) -> Any:
    """torch.load with weights_only unless unsafe; errors say whether the file is empty, truncated or foreign."""
    import pickle

    import torch

    p = Path(path)
    if p.stat().st_size == 0:
        raise UsageError(f"{path} is empty (0 bytes)", "point to a complete weights file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe)
    except ModuleNotFoundError as exc:
        raise UsageError(f"{path} needs the Python module {exc.name!r} to load", f"install it (pip install {exc.name})") from exc
    except (
        pickle.UnpicklingError,
        KeyError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
        IndexError,
        TypeError,
    ) as exc:
        raise _load_error(p, exc, pickle.UnpicklingError) from exc


def _load_error(path: Path, exc: Exception, unpickling_error: type) -> UsageError:
    """Say what is wrong with a file torch.load refused, from the error and the file's first bytes."""
    msg = str(exc)
    with path.open("rb") as fh:
        head = fh.read(2)
    if "GLOBAL" in msg or "Unsupported class" in msg:
        return UsageError(f"{path} holds Python objects, not only tensors, so safe loading refused it", UNSAFE_HINT)
    if head == b"PK":  # a zip, as torch.save writes
        if isinstance(exc, EOFError) or "central directory" in msg or not zipfile.is_zipfile(path):
            return UsageError(f"{path} is truncated or corrupt ({_first_line(exc)})", "copy the weights file again")
        return UsageError(
            f"{path} could not be read as PyTorch weights ({_first_line(exc)})", "pass a file written by torch.save"
        )
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") and isinstance(exc, unpickling_error):
        return UsageError(f"{path} is a plain pickle, not a torch.save file, so safe loading cannot read it", UNSAFE_HINT)
    return UsageError(f"{path} is not a PyTorch weights file", "pass a file written by torch.save")


def _extract_state_dict(obj: Any, path: str) -> dict[str, Any]:
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "ema", "net"):
            inner = obj.get(key)
            if isinstance(inner, torch.nn.Module):
                return inner.float().state_dict()
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise UsageError(
        f"{path} holds no state_dict (found {type(obj).__name__}"
        + (f" with keys {', '.join(map(str, list(obj)[:5]))}" if isinstance(obj, dict) else "")
        + ")",
        "save the weights with torch.save(model.state_dict(), path)",
    )


def load_state_dict(model: Any, path: str, unsafe: bool, model_name: str) -> None:
    """Load a state_dict (or a checkpoint holding one) strictly, summarising any mismatch in one line."""
    state = _extract_state_dict(torch_load(path, unsafe), path)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes)):
            if keys:
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        raise UsageError(
            f"weights {path} do not fit {model_name}: {'; '.join(parts)}",
            "check that the weights were trained for this architecture",
        )
    model.load_state_dict(state, strict=True)


def _load_python_callable(source: str) -> Any:
    file_part, _, attr = source.rpartition(":")
    path = Path(file_part).resolve()
    module_name = f"pack_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {file_part} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UsageError(f"{file_part}:{exc.lineno}: syntax error: {exc.msg}", "fix the model file") from exc
    except ImportError as exc:
        raise UsageError(
            f"importing {file_part} failed: {_first_line(exc)}", "install what it imports or fix the import"
        ) from exc
    except Exception as exc:  # the user's module raised at import time
        line = _user_frame(exc, path)
        raise UsageError(f"importing {file_part} failed{line}: {_first_line(exc)}", "fix the model file") from exc
    finally:
        sys.path.remove(str(path.parent))
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        names = sorted(
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module_name
        )
        raise UsageError(f"{file_part} has no callable {attr!r}", f"callables found there: {', '.join(names) or 'none'}")
    try:
        return factory()
    except Exception as exc:
        line = _user_frame(exc, path)
        raise UsageError(f"{attr}() in {file_part} raised{line} {_first_line(exc)}", "fix the factory") from exc


def _user_frame(exc: BaseException, path: Path) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve() == path:
            return f" (line {frame.lineno})"
    return ""


def _load_model_file(path: str, unsafe: bool) -> Any:
    import torch

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            is_script = any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
        if is_script:
            from ..console import extension_ops

            extension_ops()  # a scripted detector calls torchvision's operators
            try:
                with on_purpose("torch.jit.load"):  # a TorchScript file the user brings
                    return torch.jit.load(path, map_location="cpu")  # type: ignore[no-untyped-call]  # torch.jit.load is unannotated
            except RuntimeError as exc:
                raise UsageError(f"{path} is a damaged TorchScript file ({_first_line(exc)})") from exc
    obj = torch_load(path, unsafe)
    if isinstance(obj, torch.nn.Module):
        return obj
    if isinstance(obj, dict) and isinstance(obj.get("model"), torch.nn.Module):
        return obj["model"].float()
    raise UsageError(
        f"{path} holds weights but no model architecture",
        "pass a built-in name or file.py:callable as the model and this file as --weights",
    )


def state_dict_sha256(model: Any) -> str:
    """Digest of what is really packaged: every state_dict entry (name, dtype, shape, bytes) in key order."""
    import torch

    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            continue
        tensor = value.detach().cpu().contiguous()
        if tensor.is_quantized:
            tensor = tensor.int_repr()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def load_module(plan: BuildPlan) -> tuple[Any, dict[str, Any], Any]:
    """Return (eval-mode module, weights record for the report, the model's family or None).

    `random: true` only when pack itself initialised the weights (a built-in model without --weights); a factory or a
    model file brings its own, and the record says so. Every record carries the digest of the state_dict packaged.
    """
    import torch

    from .families import family_of

    torch.manual_seed(plan.seed)
    if plan.source_kind == "builtin":
        model, record = _load_builtin(plan, _builtin_entry(plan))
    elif plan.source_kind == "python":
        model, record = _load_factory(plan)
    else:
        model, record = _load_file(plan)
    if plan.weights:
        record = {
            "random": False,
            "initialised_by": "weights file",
            "file": Path(plan.weights).name,
            "sha256": sha256_file(plan.weights),
        }
    family = family_of(model)
    if plan.entry is not None and plan.entry.prepare is not None:
        model = plan.entry.prepare(model)
    elif family is not None:
        model = family.prepare(model)
    model.eval()
    record["state_dict_sha256"] = state_dict_sha256(model)
    return model, record, family


def _builtin_entry(plan: BuildPlan) -> ModelEntry:
    """The registry entry of a built-in source: the plan's (resolve() sets it), else looked up by name."""
    entry = plan.entry or get_entry(plan.source)
    if entry is None:
        raise UsageError(f"unknown model {plan.source!r}", "run `pack models` for the built-in names")
    return entry


def _load_builtin(plan: BuildPlan, entry: ModelEntry) -> tuple[Any, dict[str, Any]]:
    missing = [m for m in entry.requires if importlib.util.find_spec(m) is None]
    if missing:
        from ..errors import EnvironmentProblem

        raise EnvironmentProblem(
            f"{entry.name} needs the Python package {missing[0]!r}",
            "install it (pip install -e '.[all]' or pip install " + missing[0] + ")",
        )
    model = entry.factory()
    record: dict[str, Any] = {"random": True, "initialised_by": "pack", "seed": plan.seed}
    if plan.weights:
        if entry.weights == "ultralytics":
            model = _load_ultralytics(model, plan.weights, plan.unsafe_load, entry.name)
        else:
            load_state_dict(model, plan.weights, plan.unsafe_load, entry.name)
    return model, record


def _load_factory(plan: BuildPlan) -> tuple[Any, dict[str, Any]]:
    import torch

    model = _load_python_callable(plan.source)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(
            f"{plan.source} returned {type(model).__name__}, not a torch.nn.Module",
            "make the factory return the model instance",
        )
    record: dict[str, Any] = {
        "random": False,
        "initialised_by": "factory",
        "factory": Path(plan.source.rpartition(":")[0]).name + ":" + plan.source.rpartition(":")[2],
    }
    if plan.weights:
        load_state_dict(model, plan.weights, plan.unsafe_load, plan.source)
    return model, record


def _load_file(plan: BuildPlan) -> tuple[Any, dict[str, Any]]:
    model = _load_model_file(plan.source, plan.unsafe_load)
    record: dict[str, Any] = {
        "random": False,
        "initialised_by": "model file",
        "file": Path(plan.source).name,
        "sha256": sha256_file(plan.source),
    }
    if plan.weights:
        load_state_dict(model, plan.weights, plan.unsafe_load, plan.source)
    return model, record


def _load_ultralytics(model: Any, weights: str, unsafe: bool, name: str) -> Any:
    """A user's ultralytics `.pt`: a state_dict loads safely; a pickled checkpoint needs --unsafe-load."""
    import torch

    obj = torch_load(weights, unsafe)
    inner = obj.get("ema") or obj.get("model") if isinstance(obj, dict) else obj
    if isinstance(inner, torch.nn.Module):
        names = getattr(inner, "names", None)
        inner = inner.float()
        if names:
            inner.names = names
        return inner
    load_state_dict(model, weights, unsafe, name)
    return model
