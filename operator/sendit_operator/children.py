"""The children of a batch, rendered from it: the stage Jobs, the workers' RBAC and the
Services that bring a PACS's storage commitment reports to each delivering shard. Pure.

Every name is derived from the batch's name, so the operator, restarted at any point, finds
what it already made instead of making a second one. Every child is adopted by the batch
(`kopf.adopt`: owned by it, in its namespace, with its labels), so deleting the batch deletes
them.
"""

from __future__ import annotations

from typing import Any

import kopf

from sendit_api import exits
from sendit_api.names import (
    BATCH_LABEL,
    CONFIG_MOUNT,
    GROUP,
    IDENTIFIER_TOKEN_ENV,
    LOCAL_MOUNT,
    PACS_CREDENTIAL_ENV,
    PACS_TLS_ENV,
    PACS_TLS_MOUNT,
    PLURAL,
    PSEUDONYM_KEY_ENV,
    SENDS_ANNOTATION,
    SOURCE_MOUNT,
    STAGE_LABEL,
    TMP_MOUNT,
    WORK_MOUNT,
    WORKER_CONTAINER,
    WORKER_UID,
)
from sendit_api.spec import Batch, BatchSpec, KeyRef

from .policy import Policy

JSON = dict[str, Any]
COMMIT_PORT = "dicom-commit"
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"  # set by the Job controller

# The restricted Pod Security Standard, for every pod the operator makes.
POD_SECURITY: JSON = {
    "runAsNonRoot": True,
    "runAsUser": WORKER_UID,
    "runAsGroup": WORKER_UID,
    "fsGroup": WORKER_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: JSON = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}


def job_name(batch: str, stage: str) -> str:
    return f"{batch}-{stage}"


def worker_account(batch: Batch) -> str:
    """The workers' ServiceAccount: the batch's own, unless the spec names one."""
    return batch.spec.service_account_name or f"{batch.name}-worker"


def sends(spec: BatchSpec, stage: str) -> bool:
    """Does a Job of this stage deliver? A process Job does with send: auto."""
    return stage == "send" or (stage == "process" and spec.send == "auto")


def secret_env(name: str, ref: KeyRef) -> JSON:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def render_job(
    owner: JSON, batch: Batch, stage: str, image: str, policy: Policy, shards: int = 1
) -> JSON:
    """A stage's Indexed Job running `sendit worker`: the process and send stages one pod per
    shard of the plan (`shards`); the plan stage one pod, with neither key nor configuration
    (it reads headers only); the cleanup stage one pod with the source mounted read-write.
    For a batch the `policy` allows (policy.refusal): it says where a local destination is."""
    spec = batch.spec
    n = shards if stage in ("process", "send") else 1
    delivers = sends(spec, stage)
    source = dict(spec.source.volume or {})
    if "persistentVolumeClaim" in source:
        claim = {**source["persistentVolumeClaim"], "readOnly": stage != "cleanup"}
        source["persistentVolumeClaim"] = claim
    volumes: list[JSON] = [
        {"name": "source", **source},
        {"name": "work", **(spec.workspace or {"emptyDir": {}})},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[JSON] = [
        {"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": stage != "cleanup"},
        {"name": "work", "mountPath": WORK_MOUNT},
        {"name": "tmp", "mountPath": TMP_MOUNT},
    ]
    args = [
        "worker",
        *("--namespace", batch.namespace or "", "--batch", batch.name),
        *("--stage", stage, "--shards", str(n)),
        *("--source", SOURCE_MOUNT, "--work", WORK_MOUNT, "--config", CONFIG_MOUNT),
    ]
    env: list[JSON] = [{"name": "TMPDIR", "value": TMP_MOUNT}, {"name": "HOME", "value": TMP_MOUNT}]
    if stage == "process":
        maps = spec.deidentify.config_maps()
        if maps:
            sources = [
                {
                    "configMap": {
                        "name": m.name,
                        "items": [{"key": m.key, "path": f"{m.name}/{m.key}"}],
                    }
                }
                for m in maps
            ]
            volumes.append({"name": "config", "projected": {"sources": sources}})
            mounts.append({"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True})
        deid = spec.deidentify
        if deid.pseudonym_key and deid.pseudonym_key.secret_key_ref:
            env.append(secret_env(PSEUDONYM_KEY_ENV, deid.pseudonym_key.secret_key_ref))
        if deid.identifier_service and deid.identifier_service.token_secret_ref:
            env.append(secret_env(IDENTIFIER_TOKEN_ENV, deid.identifier_service.token_secret_ref))
        if delivers:
            args.append("--send")
    pacs = spec.destinations.pacs
    if delivers and pacs and pacs.credentials_secret_ref:
        secret = pacs.credentials_secret_ref.name
        env += [
            {
                "name": variable,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}},
            }
            for key, variable in PACS_CREDENTIAL_ENV.items()
        ]
        # TLS material as files (ssl loads them so), readable by the worker's group only.
        items = [{"key": key, "path": key} for key in PACS_TLS_ENV]
        tls = {"secretName": secret, "items": items, "optional": True, "defaultMode": 0o440}
        volumes.append({"name": "pacs-tls", "secret": tls})
        mounts.append({"name": "pacs-tls", "mountPath": PACS_TLS_MOUNT, "readOnly": True})
        env += [
            {"name": variable, "value": f"{PACS_TLS_MOUNT}/{key}"}
            for key, variable in PACS_TLS_ENV.items()
        ]
    local = spec.destinations.local
    if delivers and local:
        # The administrator's folder, which must exist (a kubelet would make a missing one
        # root's, 0755, where the workers cannot write); the workers make the batch's below it.
        root, below = policy.local_mount(local.path)
        volumes.append({"name": "local", "hostPath": {"path": root, "type": "Directory"}})
        mounts.append({"name": "local", "mountPath": LOCAL_MOUNT})
        args += ["--local", f"{LOCAL_MOUNT}/{below}".rstrip("/")]
    container: JSON = {
        "name": WORKER_CONTAINER,
        "image": spec.image or image,
        "command": ["sendit"],
        "args": args,
        "env": env,
        "volumeMounts": mounts,
        "resources": spec.resources or {},
        "securityContext": CONTAINER_SECURITY,
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if reports_come_in(spec, stage) and n == 1:
        # Where the PACS's storage commitment reports come in (with several shards, each on
        # its own port: port + index, which one pod template cannot declare).
        _, port = spec.destinations.pacs.dimse.listener((0, 1))
        container["ports"] = [{"name": COMMIT_PORT, "containerPort": port, "protocol": "TCP"}]
    labels = {BATCH_LABEL: batch.name, STAGE_LABEL: stage}
    job_spec: JSON = {
        "completionMode": "Indexed",
        "completions": n,
        "parallelism": n,
        "backoffLimit": spec.backoff_limit,
        "suspend": spec.suspend,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": WORKER_CONTAINER,
                        "operator": "In",
                        "values": [exits.PERMANENT],
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": worker_account(batch),
                "securityContext": POD_SECURITY,
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(batch.name, stage),
            "labels": dict(labels),
            "annotations": {SENDS_ANNOTATION: "true" if delivers else "false"},
        },
        "spec": job_spec,
    }
    kopf.adopt(job, owner=owner)
    return job


def reports_come_in(spec: BatchSpec, stage: str) -> bool:
    """Do this stage's pods listen for storage commitment reports from a PACS?"""
    pacs = spec.destinations.pacs
    dimse = pacs.dimse if pacs else None
    return sends(spec, stage) and dimse is not None and dimse.storage_commitment.mode != "disabled"


def commit_service_name(batch: str, index: int) -> str:
    return f"{batch}-commit-{index}"


def render_commit_services(owner: JSON, batch: Batch, stage: str, shards: int) -> list[JSON]:
    """One Service per delivering shard, on that shard's report port and selecting that
    shard's pod (the Indexed Job's completion index): the address a PACS that reports on a
    new association is given for the shard's calling AE title (docs/destinations.md). None
    when the stage's pods take no reports."""
    if not reports_come_in(batch.spec, stage):
        return []
    dimse = batch.spec.destinations.pacs.dimse
    services = []
    for index in range(shards):
        _, port = dimse.listener((index, shards))
        labels = {BATCH_LABEL: batch.name, STAGE_LABEL: stage}
        services.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": commit_service_name(batch.name, index), "labels": labels},
                "spec": {
                    "selector": {**labels, COMPLETION_INDEX_LABEL: str(index)},
                    "ports": [
                        {"name": COMMIT_PORT, "port": port, "targetPort": port, "protocol": "TCP"}
                    ],
                },
            }
        )
    kopf.adopt(services, owner=owner)
    return services


def render_worker_rbac(owner: JSON, batch: Batch) -> list[JSON]:
    """The workers may read their own batch and patch its status: nothing else. In the order
    they must be created: the API server lets the operator bind a Role only once it exists."""
    own = f"{batch.name}-worker"
    account = worker_account(batch)
    children: list[JSON] = []
    if account == own:
        children.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": own},
                "automountServiceAccountToken": True,
            }
        )
    children += [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": own},
            "rules": own_object_rules(PLURAL, batch.name),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": own},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": own},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": batch.namespace}],
        },
    ]
    kopf.adopt(children, owner=owner)
    return children


def own_object_rules(plural: str, name: str) -> list[JSON]:
    """Read one object of ours and patch its status, by name: all a pod of it may do."""
    return [
        {"apiGroups": [GROUP], "resources": [plural], "resourceNames": [name], "verbs": ["get"]},
        {
            "apiGroups": [GROUP],
            "resources": [f"{plural}/status"],
            "resourceNames": [name],
            "verbs": ["get", "patch"],
        },
    ]
