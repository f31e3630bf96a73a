"""The children of a batch, rendered from its body: the stage Jobs and the workers' RBAC. Pure.

Every name is derived from the batch's name, so the operator, restarted at any point, finds
what it already made instead of making a second one. Every child is owned by the batch.
"""

from __future__ import annotations

from typing import Any

from sendit_worker.cluster import EXIT_CONFIG, GROUP, PLURAL

WORKER_UID = 10001
SOURCE, WORK, CONFIG, LOCAL = "/sendit/source", "/sendit/work", "/sendit/config", "/sendit/local"
TMP = "/sendit/tmp"  # scratch space: the root filesystem is read-only
BATCH_LABEL, STAGE_LABEL, WATCH_LABEL = "sendit.dev/batch", "sendit.dev/stage", "sendit.dev/watch"
CONTAINER = "worker"


def job_name(batch: str, stage: str) -> str:
    return f"{batch}-{stage}"


def worker_account(body: dict[str, Any]) -> str:
    """The workers' ServiceAccount: the batch's own, unless the spec names one."""
    return body["spec"].get("serviceAccountName") or f"{body['metadata']['name']}-worker"


def owner(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(body: dict[str, Any], name: str, **labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": body["metadata"]["namespace"],
        "labels": {BATCH_LABEL: body["metadata"]["name"], **labels},
        "ownerReferences": [owner(body)],
    }


def config_maps(spec: dict[str, Any]) -> list[dict[str, str]]:
    """Every configMapKeyRef the batch uses (recipe and pixel filters)."""
    deid = spec["deidentify"]
    refs = [deid.get("recipe") or {}, *deid["pixels"].get("filters", [])]
    return [r["configMapKeyRef"] for r in refs if "configMapKeyRef" in r]


def secrets(spec: dict[str, Any]) -> list[dict[str, str]]:
    deid = spec["deidentify"]
    refs = [
        (deid.get("pseudonymKey") or {}).get("secretKeyRef"),
        (deid.get("identifierService") or {}).get("tokenSecretRef"),
    ]
    return [r for r in refs if r]


def claims(spec: dict[str, Any]) -> list[str]:
    volumes = [spec["source"].get("volume") or {}, spec.get("workspace") or {}]
    return [
        v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    ]


def render_job(body: dict[str, Any], stage: str, image: str) -> dict[str, Any]:
    """An Indexed Job, one pod per shard (completions = parallelism), running `sendit worker`."""
    spec, name = body["spec"], body["metadata"]["name"]
    n = spec["parallelism"]
    sends = stage == "send" or spec["send"] == "auto"
    volume = dict(spec["source"]["volume"])
    if "persistentVolumeClaim" in volume:
        volume["persistentVolumeClaim"] = {**volume["persistentVolumeClaim"], "readOnly": True}
    volumes = [
        {"name": "source", **volume},
        {"name": "work", **(spec.get("workspace") or {"emptyDir": {}})},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts = [
        {"name": "source", "mountPath": SOURCE, "readOnly": True},
        {"name": "work", "mountPath": WORK},
        {"name": "tmp", "mountPath": TMP},
    ]
    args = [
        "worker",
        *("--namespace", body["metadata"]["namespace"], "--batch", name),
        *("--stage", stage, "--shards", str(n)),
        *("--source", SOURCE, "--work", WORK, "--config", CONFIG),
    ]
    env: list[dict[str, Any]] = [{"name": "TMPDIR", "value": TMP}]
    if stage == "process":
        maps = config_maps(spec)
        if maps:
            sources = [
                {
                    "configMap": {
                        "name": m["name"],
                        "items": [{"key": m["key"], "path": f"{m['name']}/{m['key']}"}],
                    }
                }
                for m in maps
            ]
            volumes.append({"name": "config", "projected": {"sources": sources}})
            mounts.append({"name": "config", "mountPath": CONFIG, "readOnly": True})
        deid = spec["deidentify"]
        key = (deid.get("pseudonymKey") or {}).get("secretKeyRef")
        if key:
            env.append(_secret_env("SENDIT_PSEUDONYM_KEY", key))
        token = (deid.get("identifierService") or {}).get("tokenSecretRef")
        if token:
            env.append(_secret_env("SENDIT_IDENTIFIER_TOKEN", token))
        if sends:
            args.append("--send")
    local = spec["destinations"].get("local")
    if sends and local:
        volumes.append(
            {"name": "local", "hostPath": {"path": local["path"], "type": "DirectoryOrCreate"}}
        )
        mounts.append({"name": "local", "mountPath": LOCAL})
        args += ["--local", LOCAL]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.get("image") or image,
        "command": ["sendit"],
        "args": args,
        "env": env,
        "volumeMounts": mounts,
        "resources": spec.get("resources") or {},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    if spec.get("imagePullPolicy"):
        container["imagePullPolicy"] = spec["imagePullPolicy"]
    labels = {BATCH_LABEL: name, STAGE_LABEL: stage}
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": n,
        "parallelism": n,
        "backoffLimit": spec["backoffLimit"],
        "suspend": bool(spec.get("suspend")),
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [EXIT_CONFIG],
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": worker_account(body),
                # The restricted Pod Security Standard; the worker image's user is 10001.
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": WORKER_UID,
                    "runAsGroup": WORKER_UID,
                    "fsGroup": WORKER_UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    for knob in ("activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        if spec.get(knob) is not None:
            job_spec[knob] = spec[knob]
    meta = _meta(body, job_name(name, stage), **{STAGE_LABEL: stage})
    meta["annotations"] = {"sendit.dev/sends": "true" if sends else "false"}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


def _secret_env(name: str, ref: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref["name"], "key": ref["key"]}}}


def render_worker_rbac(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The workers may read their own batch and patch its status: nothing else."""
    name = body["metadata"]["name"]
    account = worker_account(body)
    own = f"{name}-worker"
    children: list[dict[str, Any]] = []
    if account == own:
        children.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": _meta(body, own),
                "automountServiceAccountToken": True,
            }
        )
    children += [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(body, own),
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": [PLURAL],
                    "resourceNames": [name],
                    "verbs": ["get"],
                },
                {
                    "apiGroups": [GROUP],
                    "resources": [f"{PLURAL}/status"],
                    "resourceNames": [name],
                    "verbs": ["get", "patch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(body, own),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": own},
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": account,
                    "namespace": body["metadata"]["namespace"],
                }
            ],
        },
    ]
    return children
