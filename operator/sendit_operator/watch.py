"""SenditWatch: one SenditBatch per finished folder, exactly once, named by a keyed hash.

The operator renders a CronJob per watch (`render_children`); each run is `sendit watch`, which
lists the finished folders (no `.tmp*` extension), makes a batch for each folder it has not
seen, and records the folders' keyed hashes in the watch's status. A batch's name is the
watch's name and an HMAC of the folder's path under the pseudonym key: never the folder's name,
which may identify a patient, and not guessable from it without the key.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sendit_worker.cluster import GROUP, VERSION, custom_objects_api
from sendit_worker.pseudonyms import Pseudonymizer, load_key
from sendit_worker.spec import API_VERSION, KIND

from .jobs import SOURCE, WATCH_LABEL

log = logging.getLogger("sendit.watch")
PLURAL = "senditwatches"
BATCHES = "senditbatches"


def finished_folders(root: Path) -> list[str]:
    """The sub-folders of root that are complete, by name, in a stable order."""
    from sendit_worker.discovery import is_unfinished  # pydicom: for the scan only

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
        "lastScanTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def render_children(watch: dict[str, Any], image: str) -> list[dict[str, Any]]:
    """The scan's CronJob, and RBAC that lets it read its watch and create batches only."""
    name, ns = watch["metadata"]["name"], watch["metadata"]["namespace"]
    spec = watch["spec"]
    own = f"{name}-scan"
    meta = {
        "name": own,
        "namespace": ns,
        "labels": {WATCH_LABEL: name},
        "ownerReferences": [
            {
                "apiVersion": watch["apiVersion"],
                "kind": watch["kind"],
                "name": name,
                "uid": watch["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    secret = spec["template"]["deidentify"]["pseudonymKey"]["secretKeyRef"]
    container = {
        "name": "scan",
        "image": spec.get("image") or image,
        "command": ["sendit"],
        "args": ["watch", "--namespace", ns, "--watch", name, "--source", SOURCE],
        "env": [
            {
                "name": "SENDIT_PSEUDONYM_KEY",
                "valueFrom": {"secretKeyRef": {"name": secret["name"], "key": secret["key"]}},
            }
        ],
        "volumeMounts": [{"name": "source", "mountPath": SOURCE, "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    rules = [
        {"apiGroups": [GROUP], "resources": [PLURAL], "resourceNames": [name], "verbs": ["get"]},
        {
            "apiGroups": [GROUP],
            "resources": [f"{PLURAL}/status"],
            "resourceNames": [name],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": [GROUP], "resources": [BATCHES], "verbs": ["create"]},
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": own},
            "subjects": [{"kind": "ServiceAccount", "name": own, "namespace": ns}],
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta,
            "spec": {
                "schedule": spec["schedule"],
                "suspend": bool(spec.get("suspend")),
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 2,
                        "template": {
                            "metadata": {"labels": {WATCH_LABEL: name}},
                            "spec": {
                                "restartPolicy": "Never",
                                "serviceAccountName": own,
                                "containers": [container],
                                "volumes": [{"name": "source", **spec["volume"]}],
                            },
                        },
                    }
                },
            },
        },
    ]


def main(args: Any) -> int:
    """The `sendit watch` command: one scan."""
    from kubernetes.client.exceptions import ApiException

    api = custom_objects_api()
    ns = args.namespace
    watch = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, args.watch)
    key, _ = load_key(None, create_default=False)

    def create(batch: dict[str, Any]) -> bool:
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, ns, BATCHES, batch)
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
        PLURAL,
        args.watch,
        {"status": new},
        _content_type="application/merge-patch+json",
    )
    return 0
