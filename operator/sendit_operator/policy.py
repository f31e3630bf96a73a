"""Who may run what: the administrator's policy on what a batch or a watch may make the operator
run (the worker image, the pods' ServiceAccount, the volumes, the node folders), checked again
here before the operator creates anything. Pure, except `PolicyFile`, which reads it.

One source: the chart's values `policy`, rendered as JSON (lists under KEYS) into the
ValidatingAdmissionPolicy that refuses a batch at `kubectl apply` and into a ConfigMap the
operator reads mounted (`--policy FILE`). The rules and their messages are those of
charts/sendit/templates/policy.yaml, in the same order; tests/test_operator_policy.py holds both
to the same cases. A message names the field and the rule, never a value of the batch (a path
could name a patient).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sendit_api.spec import BatchSpec

JSON = Mapping[str, Any]
# The policy's lists, as the chart's values and its JSON name them.
KEYS = ("images", "serviceAccounts", "sourceVolumes", "hostPathPrefixes", "localPathPrefixes")

IMAGE = "not a worker image the cluster's policy allows (policy.images)"
ACCOUNT = "not a ServiceAccount the cluster's policy allows (policy.serviceAccounts)"
VOLUME_KIND = (
    "not a volume kind the cluster's policy allows "
    "(policy.sourceVolumes; hostPath with policy.hostPathPrefixes)"
)
HOST_PATH = "not under a node folder the cluster's policy allows (policy.hostPathPrefixes)"
HOST_PATH_TYPE = "a hostPath source is an existing Directory, never created"
READ_ONLY = "delete needs a writable source; a hostPath source is always read-only"
WORKSPACE = (
    "not a volume kind the cluster's policy allows "
    "(emptyDir, or one of policy.sourceVolumes other than hostPath)"
)
LOCAL_PATH = "not under a node folder the cluster's policy allows (policy.localPathPrefixes)"


@dataclass(frozen=True)
class Policy:
    images: tuple[str, ...]  # exact, or a prefix ending in *
    service_accounts: tuple[str, ...]
    source_volumes: tuple[str, ...]  # volume source kinds: persistentVolumeClaim, nfs...
    host_path_prefixes: tuple[str, ...]  # node folders a read-only hostPath source may be in
    local_path_prefixes: tuple[str, ...]  # node folders destinations.local may be in

    @classmethod
    def strict(cls, worker_image: str) -> Policy:
        """Without a policy: the operator's own worker image, no ServiceAccount named by a
        batch, the sources the restricted Pod Security Standard allows, no node folder."""
        return cls((worker_image,), (), ("persistentVolumeClaim", "csi"), (), ())

    @classmethod
    def parse(cls, text: str) -> Policy:
        """From the chart's JSON; a list missing is an error, not an empty list."""
        data = json.loads(text)
        return cls(*(tuple(str(entry) for entry in data[key]) for key in KEYS))

    def allows_image(self, image: str | None) -> bool:
        return image is None or any(
            image == i or (i.endswith("*") and image.startswith(i[:-1])) for i in self.images
        )

    def local_mount(self, path: str) -> tuple[str, str]:
        """Where a local destination is mounted from: the deepest allowed folder that holds it
        (it exists, made by the administrator for the workers' user), and the path below it,
        which the workers create, as their own."""
        prefix = max((p for p in self.local_path_prefixes if under(path, (p,))), key=len)
        return prefix, path[len(prefix) :].lstrip("/")


def under(path: str, prefixes: tuple[str, ...]) -> bool:
    """An absolute path with no `..`, in one of the folders (a prefix matches whole names)."""
    return (
        path.startswith("/")
        and ".." not in path.split("/")
        and any(path == p or path.startswith(p + "/") for p in prefixes)
    )


def refusal(policy: Policy, spec: BatchSpec) -> str | None:
    """The first rule of the policy the batch breaks, as "field: why"; None if it keeps them."""
    return next(_batch(policy, spec), None)


def watch_refusal(policy: Policy, spec: JSON) -> str | None:
    """The same for a SenditWatch: its scan's image, and its volume as a batch's source."""
    return next(_watch(policy, spec), None)


def _batch(policy: Policy, spec: BatchSpec) -> Iterator[str]:
    source = spec.source.volume or {}
    if not policy.allows_image(spec.image):
        yield f"spec.image: {IMAGE}"
    if spec.service_account_name not in (None, *policy.service_accounts):
        yield f"spec.serviceAccountName: {ACCOUNT}"
    yield from _source(policy, "spec.source.volume", source)
    if "hostPath" in source and spec.cleanup.source == "delete":
        yield f"spec.cleanup.source: {READ_ONLY}"
    workspace = spec.workspace or {}
    if not all(
        k == "emptyDir" or (k != "hostPath" and k in policy.source_volumes) for k in workspace
    ):
        yield f"spec.workspace: {WORKSPACE}"
    local = spec.destinations.local
    if local is not None and not under(local.path, policy.local_path_prefixes):
        yield f"spec.destinations.local.path: {LOCAL_PATH}"


def _watch(policy: Policy, spec: JSON) -> Iterator[str]:
    if not policy.allows_image(spec.get("image")):
        yield f"spec.image: {IMAGE}"
    yield from _source(policy, "spec.volume", spec.get("volume") or {})


def _source(policy: Policy, at: str, volume: JSON) -> Iterator[str]:
    hostpath = policy.host_path_prefixes
    if not all(k in policy.source_volumes or (k == "hostPath" and hostpath) for k in volume):
        yield f"{at}: {VOLUME_KIND}"
    if "hostPath" in volume:
        host = volume["hostPath"] if isinstance(volume["hostPath"], Mapping) else {}
        if not under(str(host.get("path", "")), hostpath):
            yield f"{at}.hostPath.path: {HOST_PATH}"
        if host.get("type", "") not in ("", "Directory"):
            yield f"{at}.hostPath.type: {HOST_PATH_TYPE}"


@dataclass
class PolicyFile:
    """The policy as the operator's pod has it: the chart's ConfigMap, mounted. Read again
    whenever the file changed (the kubelet replaces it when the ConfigMap changes)."""

    path: Path
    _stamp: tuple[int, int] | None = field(default=None, init=False)
    _policy: Policy | None = field(default=None, init=False)

    def __call__(self) -> Policy:
        info = os.stat(self.path)  # through the kubelet's symlinks: the file of the moment
        stamp = (info.st_ino, info.st_mtime_ns)
        if self._policy is None or stamp != self._stamp:
            self._policy, self._stamp = Policy.parse(self.path.read_text()), stamp
        return self._policy
