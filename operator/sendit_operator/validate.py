"""What the schema cannot check: that a batch's references exist in its namespace, and that it
names what a cluster needs. Pure: it takes a lookup for what exists, and says (without any value
from the batch's data) what is missing, or None."""

from __future__ import annotations

from collections.abc import Callable

from sendit_api.spec import BatchSpec

Exists = Callable[[str, str], bool]  # (kind, name) -> does it exist in the batch's namespace


def problem(spec: BatchSpec, exists: Exists) -> str | None:
    deid = spec.deidentify
    if not spec.source.volume:
        return "spec.source.volume is required in a cluster (the volume holding the folders)"
    if not (deid.pseudonym_key and deid.pseudonym_key.secret_key_ref):
        return "spec.deidentify.pseudonymKey.secretKeyRef is required in a cluster"
    if any(ref.file is not None for ref in (deid.recipe, *deid.pixels.filters) if ref):
        return "in a cluster, recipes and filters are given as configMapKeyRef, not file"
    wanted = (
        [("Secret", name) for name in spec.secret_names()]
        + [("ConfigMap", r.name) for r in deid.config_maps()]
        + [("PersistentVolumeClaim", c) for c in spec.claims()]
    )
    for kind, name in wanted:
        if not exists(kind, name):
            return f"{kind} {name} not found (or the operator may not read it)"
    return None
