"""Typed batches for tests, parsed from small manifests by the CRD (defaults included)."""

from __future__ import annotations

from typing import Any

from sendit_api.spec import Batch, Destinations, parse_batch


def batch(name: str = "b", folders: tuple[str, ...] = ("in",), **spec: Any) -> Batch:
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
    return parse_batch(
        {
            "apiVersion": "sendit.dev/v1alpha1",
            "kind": "SenditBatch",
            "metadata": meta,
            "spec": {"source": {"folders": list(folders)}, **spec},
        }
    )


def destinations(**kinds: Any) -> Destinations:
    return batch(destinations=kinds).spec.destinations
