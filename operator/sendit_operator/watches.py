"""A SenditWatch's children, rendered from it: a CronJob that runs `sendit watch` (one scan,
in the worker image: it reads the volume) and RBAC that lets the scan read its watch, patch its
status and create batches only. Pure."""

from __future__ import annotations

from typing import Any

import kopf

from sendit_api.names import (
    GROUP,
    PLURAL,
    PSEUDONYM_KEY_ENV,
    SOURCE_MOUNT,
    TMP_MOUNT,
    WATCH_LABEL,
    WATCH_PLURAL,
)
from sendit_api.spec import KeyRef

from .children import CONTAINER_SECURITY, POD_SECURITY, own_object_rules, secret_env


def render_children(watch: dict[str, Any], image: str) -> list[dict[str, Any]]:
    """The scan's CronJob, and RBAC that lets it read its watch and create batches only."""
    name, ns = watch["metadata"]["name"], watch["metadata"]["namespace"]
    spec = watch["spec"]
    own = f"{name}-scan"
    secret = spec["template"]["deidentify"]["pseudonymKey"]["secretKeyRef"]
    container = {
        "name": "scan",
        "image": spec.get("image") or image,
        "command": ["sendit"],
        "args": ["watch", "--namespace", ns, "--watch", name, "--source", SOURCE_MOUNT],
        "env": [
            secret_env(PSEUDONYM_KEY_ENV, KeyRef(secret["name"], secret["key"])),
            {"name": "HOME", "value": TMP_MOUNT},
            {"name": "TMPDIR", "value": TMP_MOUNT},
        ],
        "volumeMounts": [
            {"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": TMP_MOUNT},
        ],
        "securityContext": CONTAINER_SECURITY,
    }
    rules = [
        *own_object_rules(WATCH_PLURAL, name),
        {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["create"]},
    ]
    children = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": own, "labels": {WATCH_LABEL: name}},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": own, "labels": {WATCH_LABEL: name}},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": own, "labels": {WATCH_LABEL: name}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": own},
            "subjects": [{"kind": "ServiceAccount", "name": own, "namespace": ns}],
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": own, "labels": {WATCH_LABEL: name}},
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
                                "securityContext": POD_SECURITY,
                                "containers": [container],
                                "volumes": [
                                    {"name": "source", **spec["volume"]},
                                    {"name": "tmp", "emptyDir": {}},
                                ],
                            },
                        },
                    }
                },
            },
        },
    ]
    kopf.adopt(children, owner=watch)
    return children
