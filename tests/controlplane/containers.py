"""How the fake node (fakenode.py, a kubelet TEST DOUBLE) runs a Pod's container in its image:
the `docker run` arguments for a container spec. Pure: the fake node resolves the volumes and
the env, inspects the image, and runs what this returns.

What is translated (Kubernetes -> Docker):
  image ENTRYPOINT/CMD and the container's command/args, as a kubelet does (command replaces
  the entrypoint and drops CMD; args alone replace CMD); workingDir; env (the values travel in
  the docker CLI's environment, `-e NAME`, never in its arguments);
  securityContext, the container's over the Pod's: runAsUser/runAsGroup (`--user`), fsGroup and
  supplementalGroups (`--group-add`), runAsNonRoot (refused, as a kubelet refuses, for an
  image whose user is root or not numeric), readOnlyRootFilesystem (`--read-only`),
  capabilities add/drop, allowPrivilegeEscalation: false (`no-new-privileges`), privileged,
  seccompProfile (RuntimeDefault = Docker's default profile; unset or Unconfined = unconfined,
  the Kubernetes default; Localhost is refused);
  resources.limits memory (`--memory`, no swap) and cpu (`--cpus`), requests.cpu (shares);
  mounts: binds (read-only where the mount or the volume says so) and tmpfs (emptyDir).
Always the host network (so the API server on 127.0.0.1 is reachable); no bridge exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes.utils import parse_quantity

JSON = dict[str, Any]


class Refused(Exception):
    """The kubelet would not create this container (CreateContainerConfigError)."""


@dataclass(frozen=True)
class Mount:
    target: str
    source: str | None  # a host directory to bind; None: a tmpfs
    read_only: bool = False
    size: int | None = None  # tmpfs bytes (emptyDir.sizeLimit)

    def arg(self) -> str:
        if self.source is None:
            size = f",tmpfs-size={self.size}" if self.size else ""
            return f"type=tmpfs,dst={self.target},tmpfs-mode=1777{size}"
        if "," in self.source or "," in self.target:
            raise Refused(f"the fake node cannot mount a path with a comma: {self.target}")
        ro = ",readonly" if self.read_only else ""
        return f"type=bind,src={self.source},dst={self.target}{ro}"


def security(pod_spec: JSON, container: JSON) -> JSON:
    """The container's effective securityContext: its own fields over the Pod's."""
    pod = dict(pod_spec.get("securityContext") or {})
    own = container.get("securityContext") or {}
    merged = {k: pod[k] for k in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")
              if k in pod}  # fmt: skip
    merged.update(own)
    return merged


def user_arg(sec: JSON, image_user: str) -> str | None:
    """`--user` for the effective securityContext; Refused where runAsNonRoot forbids it."""
    uid = sec.get("runAsUser")
    gid = sec.get("runAsGroup")
    if sec.get("runAsNonRoot"):
        if uid is None:
            name = image_user.split(":", 1)[0]
            if not name or name == "root":
                raise Refused("container has runAsNonRoot and image will run as root")
            if not name.isdigit():
                raise Refused(
                    f"container has runAsNonRoot and image has non-numeric user ({name}),"
                    " cannot verify user is non-root"
                )
            if int(name) == 0:
                raise Refused("container has runAsNonRoot and image will run as root")
        elif int(uid) == 0:
            raise Refused("container's runAsUser breaks non-root policy")
    if uid is None and gid is None:
        return None
    user = str(uid) if uid is not None else (image_user.split(":", 1)[0] or "0")
    return f"{user}:{gid}" if gid is not None else user


def run_args(
    *,
    name: str,
    image: str,
    image_user: str,
    pod_spec: JSON,
    container: JSON,
    mounts: list[Mount],
    env_names: list[str],
    labels: dict[str, str],
) -> list[str]:
    """`docker run` with everything after `docker` (attached: its exit code is the
    container's, its output the container's log)."""
    sec = security(pod_spec, container)
    args = ["run", "--name", name, "--network", "host", "--pull", "never"]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    user = user_arg(sec, image_user)
    if user:
        args += ["--user", user]
    pod_sec = pod_spec.get("securityContext") or {}
    groups = [pod_sec["fsGroup"]] if "fsGroup" in pod_sec else []
    for gid in [*groups, *(pod_sec.get("supplementalGroups") or [])]:
        args += ["--group-add", str(gid)]
    if sec.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sec.get("privileged"):
        args.append("--privileged")
    caps = sec.get("capabilities") or {}
    for cap in caps.get("drop") or []:
        args += ["--cap-drop", cap]
    for cap in caps.get("add") or []:
        args += ["--cap-add", cap]
    if sec.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    seccomp = (sec.get("seccompProfile") or {}).get("type", "Unconfined")
    if seccomp == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        raise Refused(f"the fake node does not load seccomp profiles of type {seccomp}")
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    if "memory" in limits:
        memory = int(parse_quantity(limits["memory"]))
        args += ["--memory", str(memory), "--memory-swap", str(memory)]
    if "cpu" in limits:
        args += ["--cpus", str(float(parse_quantity(limits["cpu"])))]
    if "cpu" in requests:
        args += ["--cpu-shares", str(max(2, int(parse_quantity(requests["cpu"]) * 1024)))]
    for mount in mounts:
        args += ["--mount", mount.arg()]
    for env_name in env_names:
        args += ["-e", env_name]
    if container.get("workingDir"):
        args += ["--workdir", container["workingDir"]]
    command = list(container.get("command") or [])
    rest = list(container.get("args") or [])
    if command:
        return [*args, "--entrypoint", command[0], image, *command[1:], *rest]
    return [*args, image, *rest]
