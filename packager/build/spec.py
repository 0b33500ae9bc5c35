"""Read and check a `pack.yaml` spec against its JSON schema; errors name the failing path.

The schema's types are read strictly: an `integer` is a whole number written without a fraction (`4`, not `4.0`, which
would reach numpy as a float) and a `number` is finite (YAML writes `.nan` and `.inf`, which no tolerance, range or
speed-up can mean). The document itself is read by safeio (size, nesting depth, no aliases).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, cast

from ..errors import UsageError

PATH_KEYS = ("weights", "labels")


def enums() -> dict[str, list[str]]:
    """The schema's name tables (its `$defs`), from the registries that own them: the shipped file restates them for
    editors and readers, and pack checks specs against these."""
    from ..export import FORMATS
    from ..registry import DTYPES
    from ..variants import BASE, VARIANTS

    return {
        "dtype": list(DTYPES),
        "format": FORMATS.names(),
        "variant_kind": VARIANTS.names(),
        "served_variant": [*VARIANTS.names(), BASE],
    }


def shipped_schema() -> dict[str, Any]:
    """packager/schemas/spec.schema.json as shipped."""
    loaded: dict[str, Any] = json.loads((files("packager") / "schemas" / "spec.schema.json").read_text())
    return loaded


def schema() -> dict[str, Any]:
    """The spec's JSON schema, its name tables filled from the registries."""
    loaded = shipped_schema()
    for name, values in enums().items():
        loaded["$defs"][name]["enum"] = values
    return loaded


def _where(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _integer(checker: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(checker: Any, value: Any) -> bool:
    return _integer(checker, value) or (isinstance(value, float) and math.isfinite(value))


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    strict = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({"integer": _integer, "number": _number})
    extend = cast(Callable[..., Any], jsonschema.validators.extend)  # untyped in jsonschema
    return extend(jsonschema.Draft202012Validator, type_checker=strict)(schema())


def check(data: Any, origin: str) -> dict[str, Any]:
    """Validate a spec mapping; raise UsageError naming the first failing path."""
    if not isinstance(data, dict):
        raise UsageError(f"{origin}: a spec must be a mapping of keys (name, source, inputs, ...), got {type(data).__name__}")
    errors = sorted(_validator().iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        message = err.message
        if isinstance(err.instance, float) and not math.isfinite(err.instance):
            message = f"{err.instance} is not a finite number"
        elif err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            message += f" (allowed: {', '.join(allowed)})"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UsageError(f"{origin}: {_where(err.absolute_path)}: {message}{more}", "fix the spec and build again")
    return data


def load(path: str | Path) -> dict[str, Any]:
    """Load a spec file; relative `source`, `weights` and `labels` paths are taken from the spec's folder."""
    from ..safeio import MAX_TEXT, load_yaml

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"spec file not found: {path}", "pass the path of an existing pack.yaml")
    if path.stat().st_size > MAX_TEXT:
        raise UsageError(f"{path}: {path.stat().st_size:,d} bytes is not a spec", "pass a YAML spec")
    try:
        data = load_yaml(path.read_bytes(), str(path), UsageError)
    except UsageError as exc:
        raise UsageError(exc.message, "fix the YAML syntax (anchors and aliases are not accepted)") from None
    data = check(data, str(path))
    base = path.resolve().parent
    for key in PATH_KEYS:
        if key in data and not Path(data[key]).is_absolute():
            data[key] = str(base / data[key])
    calibration = (data.get("variants") or {}).get("calibration")
    if calibration and not Path(calibration).is_absolute():
        data["variants"]["calibration"] = str(base / calibration)
    source = data.get("source")
    if source and _looks_like_path(source):
        file_part, sep, attr = source.partition(":") if ".py:" in source else (source, "", "")
        if not Path(file_part).is_absolute():
            data["source"] = str(base / file_part) + sep + attr
    return data


def _looks_like_path(source: str) -> bool:
    return "/" in source or source.endswith((".py", ".pt", ".pth", ".ts")) or ".py:" in source
