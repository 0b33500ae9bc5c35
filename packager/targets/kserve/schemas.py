"""Strict validation of KServe manifests against the CRD schemas of the pinned KServe release (packager/schemas/).

The API server treats a CRD schema as structural: with strict field validation (kubectl's default) a field that the
schema does not declare is an error. The shipped schemas never say `additionalProperties: false`, so at load time
(once, cached) every object that declares `properties` is closed, except a node marked
`x-kubernetes-preserve-unknown-fields: true` (and everything under it) and a map (`additionalProperties: {...}`).
`metadata` is Kubernetes' ObjectMeta, which the CRD leaves as a bare object: it is checked against the ObjectMeta
fields below. Problems name their path as kubectl does: `spec.predictor.containers[0].imagee: unknown field`.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from typing import Any

import jsonschema

GROUP = "serving.kserve.io"
KINDS = {
    # kind: (apiVersion, shipped schema)
    "InferenceService": (f"{GROUP}/v1beta1", "kserve-inferenceservice-v1beta1.schema.json"),
    "ServingRuntime": (f"{GROUP}/v1alpha1", "kserve-servingruntime-v1alpha1.schema.json"),
    "ClusterServingRuntime": (f"{GROUP}/v1alpha1", "kserve-clusterservingruntime-v1alpha1.schema.json"),
}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
PRESERVE = "x-kubernetes-preserve-unknown-fields"

_STRING = {"type": "string"}
_STRING_MAP = {"type": "object", "additionalProperties": _STRING}
# Kubernetes' ObjectMeta (k8s.io/apimachinery meta/v1), the fields a client may send; nested objects stay open.
OBJECT_META: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": _STRING,
        "generateName": _STRING,
        "namespace": _STRING,
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": _STRING},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "managedFields": {"type": "array", "items": {"type": "object"}},
        "uid": _STRING,
        "resourceVersion": _STRING,
        "selfLink": _STRING,
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
    },
    "additionalProperties": False,
}


def close(node: Any, open_below: bool = False) -> Any:
    """A copy of the schema `node` in which every object with `properties` refuses undeclared fields, except under
    `x-kubernetes-preserve-unknown-fields: true` and in maps (nodes that say `additionalProperties` themselves)."""
    if not isinstance(node, dict):
        return node
    open_here = open_below or node.get(PRESERVE) is True
    out = dict(node)
    if isinstance(node.get("properties"), dict):
        out["properties"] = {k: close(v, open_here) for k, v in node["properties"].items()}
        if not open_here and "additionalProperties" not in node:
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            out[key] = close(node[key], open_here)
    for key in ("anyOf", "allOf", "oneOf"):
        if isinstance(node.get(key), list):
            out[key] = [close(s, open_here) for s in node[key]]
    return out


@cache
def raw_schema(kind: str) -> dict[str, Any]:
    """The shipped schema of `kind`, as KServe publishes it (not closed)."""
    loaded: dict[str, Any] = json.loads((files("packager") / "schemas" / KINDS[kind][1]).read_text())
    return loaded


@cache
def validator(kind: str) -> jsonschema.Draft7Validator:
    """The strict validator of `kind`: the shipped schema closed, metadata checked as ObjectMeta (built once)."""
    strict = close(raw_schema(kind))
    strict["properties"] = {**strict["properties"], "metadata": OBJECT_META}
    return jsonschema.Draft7Validator(strict)


def path_text(parts: Any) -> str:
    """kubectl's spelling of a path: `spec.containers[0].name`."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _messages(err: jsonschema.ValidationError) -> list[tuple[str, str]]:
    where = list(err.absolute_path)
    if err.validator == "additionalProperties" and err.validator_value is False and isinstance(err.instance, dict):
        declared = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
        return [(path_text([*where, key]), "unknown field") for key in err.instance if key not in declared]
    return [(path_text(where) or "(top)", err.message)]


def _envelope(doc: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """What the schemas leave to the API server: the apiVersion of the kind and, for an InferenceService, a DNS-1035
    name (KServe's admission webhook refuses others)."""
    out = []
    api = KINDS[kind][0]
    if doc.get("apiVersion") != api:
        out.append(("apiVersion", f"{doc.get('apiVersion')!r} is not {api}"))
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        out.append(("metadata.name", "required"))
    elif kind == "InferenceService" and (not DNS_1035.match(name) or len(name) > 63):
        out.append(("metadata.name", f"{name!r} is not a DNS-1035 label"))
    return out


def check(doc: Any) -> list[tuple[str, str]]:
    """(path, problem) for every problem of one manifest document; an empty list means valid."""
    if not isinstance(doc, dict):
        return [("(top)", f"a manifest is a mapping, not {type(doc).__name__}")]
    kind = doc.get("kind")
    if kind not in KINDS:
        return [("kind", f"{kind!r} is not a kind pack checks ({', '.join(KINDS)})")]
    found = _envelope(doc, kind)
    errors = sorted(validator(kind).iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    for err in errors:
        found.extend(_messages(err))
    return found


__all__ = ["KINDS", "OBJECT_META", "check", "close", "path_text", "raw_schema", "validator"]
