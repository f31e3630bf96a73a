"""The CRDs as shipped: the one source of truth for the shape and defaults of a SenditBatch and
a SenditWatch. The API server applies them in a cluster; `validated` applies the same schema to
a manifest outside one (its CEL rules are the API server's to check)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import Permanent
from .names import API_VERSION, KIND, PLURAL, WATCH_PLURAL

JSON = dict[str, Any]


class ManifestError(Permanent):
    """A manifest the schema refuses."""


def crd_path(plural: str) -> Path:
    """A CRD shipped in the package (wheel) or, from a source checkout, the repo's crds/."""
    name = f"sendit.dev_{plural}.yaml"
    packaged = resources.files("sendit_api") / "crds" / name
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "crds" / name


@cache
def crd(plural: str = PLURAL) -> JSON:
    # libyaml when present: the pure-Python loader takes 60 ms of every run's start on this file
    return yaml.load(
        crd_path(plural).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )


def schema(plural: str = PLURAL) -> JSON:
    return crd(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def node(*path: str, plural: str = PLURAL) -> JSON:
    """The schema of a field, by property names from the top: node("spec", "send")."""
    found = schema(plural)
    for name in path:
        found = found["properties"][name]
    return found


def apply_defaults(instance: Any, at: JSON) -> Any:
    """Fill in the schema's defaults, as the API server does (returns a new object)."""
    instance = copy.deepcopy(instance)
    if isinstance(instance, dict):
        for name, sub in at.get("properties", {}).items():
            if name not in instance and "default" in sub:
                instance[name] = copy.deepcopy(sub["default"])
            if name in instance:
                instance[name] = apply_defaults(instance[name], sub)
    elif isinstance(instance, list) and "items" in at:
        instance = [apply_defaults(item, at["items"]) for item in instance]
    return instance


def validated(manifest: Any, kind: str = KIND) -> JSON:
    """The manifest defaulted and checked against its CRD; ManifestError says where and which
    rule, never the value (a folder name may identify someone, and this message reaches logs)."""
    plural = PLURAL if kind == KIND else WATCH_PLURAL
    if not isinstance(manifest, dict):
        raise ManifestError("the manifest is not a YAML mapping")
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != kind:
        raise ManifestError(f"the manifest must be apiVersion {API_VERSION}, kind {kind}")
    defaulted = apply_defaults(manifest, schema(plural))
    errors = jsonschema.Draft7Validator(schema(plural)).iter_errors(defaulted)
    first = min(errors, key=lambda e: list(map(str, e.path)), default=None)
    if first is not None:
        raise ManifestError(_describe(first, kind))
    unknown = next(unknown_fields(defaulted, schema(plural)), None)
    if unknown is not None:
        where = "/".join(unknown[:-1]) or "(top)"
        raise ManifestError(f"invalid {kind} at {where}: unknown field {unknown[-1]!r}")
    return defaulted


def unknown_fields(
    instance: Any, at: JSON, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Fields the schema does not know, as kubectl's strict field validation refuses them (a
    field Sendit does not understand is an error, never silently ignored). The field's name is
    the schema's business, so it may be named; values never are."""
    if isinstance(instance, dict) and "properties" in at:
        for name, value in instance.items():
            if name not in at["properties"]:
                if not at.get("x-kubernetes-preserve-unknown-fields"):
                    yield (*path, name)
                continue
            yield from unknown_fields(value, at["properties"][name], (*path, name))
    elif isinstance(instance, list) and "items" in at:
        for n, item in enumerate(instance):
            yield from unknown_fields(item, at["items"], (*path, str(n)))


def _describe(error: jsonschema.ValidationError, kind: str) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    if error.validator == "required":
        return f"invalid {kind} at {where}: {error.message}"  # names the schema's field
    return f"invalid {kind} at {where}: must satisfy {error.validator} {error.validator_value!r}"
