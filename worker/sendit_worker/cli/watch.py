"""`sendit watch`: one scan of a SenditWatch, run by the CronJob the operator makes for it.

It lists the finished folders (no `.tmp*` extension), makes one SenditBatch for each folder it
has not seen, exactly once, and records the folders' keyed hashes in the watch's status. A
batch's name is the watch's name and an HMAC of the folder's path under the pseudonym key:
never the folder's name, which may identify a patient, and not guessable from it without the key.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from sendit_api.clock import timestamp
from sendit_api.names import API_VERSION, GROUP, KIND, PLURAL, VERSION, WATCH_LABEL, WATCH_PLURAL

from ..identifiers.pseudonyms import Pseudonymizer, load_key
from ..intake.discovery import is_unfinished
from .kubeapi import custom_objects_api

log = logging.getLogger("sendit.watch")


def finished_folders(root: Path) -> list[str]:
    """The sub-folders of root that are complete, by name, in a stable order."""
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.is_symlink() and not is_unfinished(p.name)
    )


def folder_token(pseudonymizer: Pseudonymizer, folder: str) -> str:
    return pseudonymizer.token("watch-folder", folder, 10).lower()


def render_batch(watch: dict[str, Any], folder: str, token: str) -> dict[str, Any]:
    spec = copy.deepcopy(watch["spec"]["template"])
    path = watch["spec"].get("path", ".").strip("/")
    relative = folder if path in ("", ".") else f"{path}/{folder}"
    spec["source"] = {"volume": watch["spec"]["volume"], "folders": [relative]}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": f"{watch['metadata']['name']}-{token}",
            "namespace": watch["metadata"]["namespace"],
            "labels": {WATCH_LABEL: watch["metadata"]["name"]},
        },
        "spec": spec,
    }


def scan(watch: dict[str, Any], root: Path, key: bytes, create) -> dict[str, Any]:
    """Make the batches this scan finds; returns the watch's new status. `create(batch)`
    returns False when the batch already exists."""
    pseudonymizer = Pseudonymizer(key)
    base = root / watch["spec"].get("path", ".").strip("/")
    previous = watch.get("status") or {}
    seen = set(previous.get("seen") or [])
    present: set[str] = set()
    made = 0
    for folder in finished_folders(base):
        token = folder_token(pseudonymizer, folder)
        present.add(token)
        if token in seen:
            continue
        if create(render_batch(watch, folder, token)):
            made += 1
        seen.add(token)
    log.info("scan: %d finished folders, %d new batches", len(present), made)
    return {
        "seen": sorted(seen & present),  # a folder removed from the volume is forgotten
        "created": int(previous.get("created", 0)) + made,
        "lastScanTime": timestamp(),
    }


def main(args: Any) -> int:
    """The `sendit watch` command: one scan."""
    from kubernetes.client.exceptions import ApiException

    api = custom_objects_api()
    ns = args.namespace
    watch = api.get_namespaced_custom_object(GROUP, VERSION, ns, WATCH_PLURAL, args.watch)
    key, _ = load_key(None)

    def create(batch: dict[str, Any]) -> bool:
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, batch)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    new = scan(watch, args.source, key, create)
    api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        ns,
        WATCH_PLURAL,
        args.watch,
        {"status": new},
        _content_type="application/merge-patch+json",
    )
    return 0
