"""A quick check that a document conforms to one of pack's JSON schemas, without importing jsonschema (about 60 ms of
imports on every command that reads a report).

It reads the same schema file (the rules stay in one place) and knows the keywords pack's schemas use; it answers
True only when every keyword it met holds for certain. Anything else (a keyword it does not know, a value whose
verdict needs jsonschema's finer equality, such as 1.0 for an integer, or a broken rule) is False: "not proven",
and the caller runs the full jsonschema validation, which also gives the messages. So a report pack wrote is read
without jsonschema, and a crafted one meets the same validation as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

# Keywords that carry no rule (annotations): they never make a document fail.
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description", "$comment", "examples", "default"})

# A verdict: holds, fails for certain, or only jsonschema can say.
YES: bool = True
NO: bool = False
UNSURE: None = None


def conforms(instance: Any, schema: dict[str, Any]) -> bool:
    """True when `instance` certainly conforms to `schema` (a whole schema document, `$ref`s within it)."""
    return _check(instance, schema, schema) is YES


@lru_cache(maxsize=64)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _is_type(instance: Any, name: str) -> bool | None:
    if name == "integer":
        if isinstance(instance, float):  # jsonschema takes 1.0 as an integer: its call
            return UNSURE if instance.is_integer() else NO
        return isinstance(instance, int) and not isinstance(instance, bool)
    kinds: dict[str, Any] = {"string": str, "object": dict, "array": list, "boolean": bool, "null": type(None)}
    if name == "number":
        return isinstance(instance, (int, float)) and not isinstance(instance, bool)
    if name in kinds:
        return isinstance(instance, kinds[name])
    return UNSURE


def _equal(instance: Any, value: Any) -> bool | None:
    """Equality as JSON means it, where it is plain: strings, booleans, null and whole numbers; others: UNSURE."""
    plain = (str, bool, type(None))
    if type(instance) is int and type(value) is int:  # noqa: E721 - bool is an int subclass, and not a number here
        return instance == value
    if isinstance(instance, plain) and isinstance(value, plain):
        return type(instance) is type(value) and instance == value
    if isinstance(instance, plain) or isinstance(value, plain):
        return NO if isinstance(instance, (str, type(None))) or isinstance(value, (str, type(None))) else UNSURE
    return UNSURE


def _all(verdicts: Iterable[bool | None]) -> bool | None:
    """YES when every verdict is YES; NO at the first NO; else UNSURE."""
    result: bool | None = YES
    for verdict in verdicts:
        if verdict is NO:
            return NO
        if verdict is UNSURE:
            result = UNSURE
    return result


def _check(instance: Any, schema: Any, root: dict[str, Any]) -> bool | None:
    if schema is True or schema == {}:
        return YES
    if schema is False:
        return NO
    if not isinstance(schema, dict):
        return UNSURE
    return _all(_keyword(key, value, instance, schema, root) for key, value in schema.items() if key not in ANNOTATIONS)


def _keyword(key: str, value: Any, instance: Any, schema: dict[str, Any], root: dict[str, Any]) -> bool | None:
    if key in ANY_TYPE:
        return _any_type(key, value, instance, root)
    if isinstance(instance, str):
        return _string(key, value, instance)
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        return _number(key, value, instance)
    if isinstance(instance, list):
        return _array(key, value, instance, root)
    if isinstance(instance, dict):
        return _object(key, value, instance, schema, root)
    return YES if key in STRING | NUMBER | ARRAY | OBJECT else UNSURE  # a keyword of another type: ignored


ANY_TYPE = frozenset({"$ref", "type", "enum", "const", "not", "oneOf"})


def _any(verdicts: list[bool | None]) -> bool | None:
    """YES when one verdict is YES; else UNSURE when one is; else NO."""
    return YES if YES in verdicts else (UNSURE if UNSURE in verdicts else NO)


def _any_type(key: str, value: Any, instance: Any, root: dict[str, Any]) -> bool | None:
    if key == "$ref":
        if not isinstance(value, str) or not value.startswith("#/$defs/"):
            return UNSURE
        target = root.get("$defs", {}).get(value[len("#/$defs/") :])
        return UNSURE if target is None else _check(instance, target, root)
    if key == "type":
        return _any([_is_type(instance, n) for n in (value if isinstance(value, list) else [value])])
    if key in ("enum", "const"):
        return _any([_equal(instance, v) for v in (value if key == "enum" else [value])])
    if key == "not":
        inner = _check(instance, value, root)
        return UNSURE if inner is UNSURE else not inner
    verdicts = [_check(instance, sub, root) for sub in value]  # oneOf
    return UNSURE if UNSURE in verdicts else verdicts.count(YES) == 1


STRING = frozenset({"minLength", "maxLength", "pattern"})
NUMBER = frozenset({"minimum", "maximum"})
ARRAY = frozenset({"items", "minItems", "maxItems", "uniqueItems"})
OBJECT = frozenset({"properties", "required", "additionalProperties", "propertyNames"})


def _string(key: str, value: Any, instance: str) -> bool | None:
    if key == "minLength":
        return bool(len(instance) >= value)
    if key == "maxLength":
        return bool(len(instance) <= value)
    if key == "pattern":
        return _regex(value).search(instance) is not None
    return YES if key in NUMBER | ARRAY | OBJECT else UNSURE


def _number(key: str, value: Any, instance: float) -> bool | None:
    if key == "minimum":
        return bool(instance >= value)
    if key == "maximum":
        return bool(instance <= value)
    return YES if key in STRING | ARRAY | OBJECT else UNSURE


def _array(key: str, value: Any, instance: list[Any], root: dict[str, Any]) -> bool | None:
    if key == "items":
        return _all(_check(item, value, root) for item in instance)
    if key == "minItems":
        return bool(len(instance) >= value)
    if key == "maxItems":
        return bool(len(instance) <= value)
    if key == "uniqueItems":
        if not value:
            return YES
        if all(isinstance(i, str) for i in instance) or all(isinstance(i, int) and not isinstance(i, bool) for i in instance):
            return len(set(instance)) == len(instance)
        return UNSURE
    return YES if key in STRING | NUMBER | OBJECT else UNSURE


def _object(key: str, value: Any, instance: dict[str, Any], schema: dict[str, Any], root: dict[str, Any]) -> bool | None:
    if key == "properties":
        return _all(_check(instance[name], sub, root) for name, sub in value.items() if name in instance)
    if key == "required":
        return all(name in instance for name in value)
    if key == "additionalProperties":
        known = schema.get("properties", {})
        if "patternProperties" in schema:
            return UNSURE
        return _all(_check(item, value, root) for name, item in instance.items() if name not in known)
    if key == "propertyNames":
        return _all(_check(name, value, root) for name in instance)
    return YES if key in STRING | NUMBER | ARRAY else UNSURE
