"""What the schema cannot check: that a batch's references exist in its namespace.

`problem` is pure: it takes a lookup for what exists, and says (without any value from the
batch's data) what is missing, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .jobs import claims, config_maps, secrets

Exists = Callable[[str, str], bool]  # (kind, name) -> does it exist in the batch's namespace


def problem(spec: dict[str, Any], exists: Exists) -> str | None:
    if not spec["source"].get("volume"):
        return "spec.source.volume is required in a cluster (the volume holding the folders)"
    if not (spec["deidentify"].get("pseudonymKey") or {}).get("secretKeyRef"):
        return "spec.deidentify.pseudonymKey.secretKeyRef is required in a cluster"
    wanted = (
        [("Secret", r["name"]) for r in secrets(spec)]
        + [("ConfigMap", r["name"]) for r in config_maps(spec)]
        + [("PersistentVolumeClaim", c) for c in claims(spec)]
    )
    for kind, name in wanted:
        if not exists(kind, name):
            return f"{kind} {name} not found (or the operator may not read it)"
    return None
