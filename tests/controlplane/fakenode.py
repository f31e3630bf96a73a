"""TEST DOUBLE: a stand-in for a Kubernetes node (kubelet + container runtime).

It is NOT a kubelet. It exists so that the real Job and Deployment controllers and garbage
collector of the test control plane see Pods run, in the images they name. What it does:

* registers the Node ``sendit-fake-node`` (condition Ready=True);
* binds every unscheduled Pod (any schedulerName) to that Node through the
  Binding subresource -- it is also the scheduler;
* for each Pod bound to it, runs the FIRST container (initContainers and further
  containers are NOT run, which the Pod's log says), then reports the Pod's
  status through the API: ``Running``, then ``Succeeded`` / ``Failed`` with
  ``containerStatuses[0].state.terminated`` (exitCode; reason Completed, Error,
  OOMKilled or ContainerCannotRun). ``restartPolicy`` OnFailure/Always start it
  again (restartCount and lastState go up);
* stops it when the Pod is deleted (or gets a deletionTimestamp, as when the Job
  controller suspends a Job) and then finalises the deletion like a kubelet would
  (delete with gracePeriodSeconds=0).

Container mode (the default; what CI runs)
    Each Pod runs in its image through the Docker engine (``docker run``; the
    arguments are built by containers.py, which lists what is translated): the
    image's entrypoint with the Pod's command/args, env, securityContext, resource
    limits, volumes as mounts, always ``--network host`` (the API server listens on
    127.0.0.1). The engine must already have the image (``scripts/images.sh``
    builds Sendit's); it never pulls: a missing image fails the Pod.
    Env: only the container's ``env``/``envFrom`` (below), plus
    ``KUBERNETES_SERVICE_HOST``/``_PORT`` = the API server (in-cluster config works
    with the ServiceAccount token volume that admission adds), ``HOSTNAME`` = the
    Pod name, and the variables named in ``PASS_ENV`` from the test process (the
    tests' emulators; a kubelet would not).
    Volumes: ``hostPath`` -> a bind of its path (DirectoryOrCreate makes it, as
    root, as a kubelet does); ``persistentVolumeClaim`` -> a bind of the directory
    registered with ``fake_node.map_claim(namespace, claim, path)`` (the Pod waits,
    Pending, until the claim is mapped), given to the Pod's fsGroup as a kubelet's
    volume ownership management does; ``emptyDir`` -> a tmpfs (sizeLimit is its
    size); ``secret`` / ``configMap`` / ``downwardAPI`` / ``projected`` (including
    the ServiceAccount token) -> a directory populated with the keys, bound
    read-only. A mount's ``readOnly`` (and a claim's or hostPath's) binds it
    read-only; ``subPath`` binds the subdirectory.
    ``runAsNonRoot`` with a root or non-numeric image user is refused as a kubelet
    refuses it: the Pod stays Pending with CreateContainerConfigError.

    NOT enforced or not done (a real kubelet does): no image pulls or
    imagePullSecrets; one container per Pod (no init or sidecar containers); no
    probes (liveness/readiness/startup: Ready is set when the container starts);
    ``kubectl logs`` without follow or previous; no exec, attach or port-forward;
    no Pod network (every Pod shares the host's: ports can collide, NetworkPolicy
    means nothing, ``hostNetwork`` is always true in effect, status.podIP is
    127.0.0.1); no Services or DNS; requests other than cpu (scheduling ignores
    them), ephemeral-storage limits, AppArmor, SELinux, sysctls, procMount and
    Localhost seccomp profiles; an emptyDir is a tmpfs (its contents count
    against the memory limit, and are lost when the container restarts); projected
    files are not refreshed (the token lives its first hour) and their modes are
    not set; fsGroup is applied to claims only; eviction, node pressure, preemption
    and activeDeadlineSeconds on Pods.

Process mode (opt-in: ``SENDIT_FAKENODE=process``, for quick local runs without an engine)
    Runs the first container's ``command`` + ``args`` as a local subprocess (image
    and entrypoint are ignored; a container without an explicit ``command`` fails
    the Pod). Nothing of the securityContext, resources, readOnly or the image is
    enforced. The process's environment is the test process's own (so PATH,
    virtualenvs and PYTHONPATH work), minus ``KUBERNETES_*``, plus the container's
    env, plus ``KUBECONFIG`` = a kubeconfig holding a fresh TokenRequest token of
    the Pod's ServiceAccount (so RBAC applies) and ``SENDIT_PATH_MAP`` (below).
    We cannot chroot, so mounts become local directories: hostPath and claims as
    above, every other volume a temp dir. Paths inside the container are
    translated two ways:
      1. env ``SENDIT_PATH_MAP`` = JSON ``{mountPath: localDir}``, and
      2. in ``command``, ``args``, env values and ``workingDir``, every literal
         occurrence of a mountPath that starts a string or follows ``=``, ``:``,
         ``,`` or whitespace, and ends at ``/``, the end or such a separator, is
         replaced by its local directory (longest mountPath first).
    ``workingDir`` not under a mount -> a per-Pod temp dir.

Env in both modes: plain values, ``$(VAR)`` expansion, ``fieldRef``
(metadata.name, namespace, uid, labels['k'], annotations['k'], spec.nodeName,
spec.serviceAccountName, status.podIP, status.hostIP -- so
``JOB_COMPLETION_INDEX`` of Indexed Jobs resolves), ``resourceFieldRef`` (the
request/limit value, or "0"), ``secretKeyRef`` and ``configMapKeyRef``,
``envFrom`` of both; a missing non-optional Secret or key keeps the Pod Pending.

Logs: stdout+stderr of each Pod go to one file per Pod;
``fake_node.logs(namespace, pod_name)`` returns it (with the node's own ``[fake node]``
lines); ``kubectl logs`` serves the Pod's own lines (the node's log endpoint, _LogServer).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.server
import json
import logging
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

from . import containers

log = logging.getLogger(__name__)

NODE_NAME = "sendit-fake-node"
NODE_LABEL = "sendit.test/fake-node"  # on every container the node runs: its id
MODE_ENV = "SENDIT_FAKENODE"  # "process": the opt-in local-process mode
# Passed from the test process to every container (a kubelet would not: the tests' emulators).
PASS_ENV = ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class PodSetupError(Exception):
    """The Pod cannot be run by the fake node (reported as a failed Pod)."""


class _NotReady(Exception):
    """Something the Pod needs (claim mapping, Secret, ConfigMap) is not there yet."""


class _Refused(Exception):
    """The kubelet would not create the container: it stays Waiting (Pending)."""


@dataclass(frozen=True)
class _Launch:
    """What to run for one start of the container: a process (`docker run` or the command)."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


def _own_by_group(root: Path, gid: int) -> None:
    """A volume's files given to the Pod's fsGroup, group-writable, directories setgid: what a
    kubelet does to a volume that supports ownership management (a PVC, not a hostPath)."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.chown(path, -1, gid)
        mode = path.stat().st_mode
        extra = 0o2070 if path.is_dir() else 0o060
        os.chmod(path, mode | extra)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand_vars(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known vars are replaced, ``$$`` -> ``$``."""

    def repl(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(repl, value)


def translate_paths(value: str, path_map: dict[str, str]) -> str:
    """Replace container mount paths by local directories (see module doc), in one pass: a
    local directory that begins like another mount path (/tmp/...) is not translated again."""
    if not path_map:
        return value
    local = {
        (m.rstrip("/") or "/"): d for m, d in sorted(path_map.items(), key=lambda i: -len(i[0]))
    }
    mounts = "|".join(re.escape(m) for m in local)  # longest first
    pattern = re.compile(r"(^|(?<=[=:,\s]))(" + mounts + r")(?=/|$|[\s:,])")
    return pattern.sub(lambda m: local[m[2]], value)


class _PodRunner(threading.Thread):
    """Runs one Pod: prepares env and volumes, runs the process, reports status."""

    def __init__(self, node: FakeNode, pod: dict[str, Any]):
        meta = pod["metadata"]
        super().__init__(name=f"fakenode-{meta['namespace']}/{meta['name']}", daemon=True)
        self.node = node
        self.pod = pod
        self.namespace = meta["namespace"]
        self.pod_name = meta["name"]
        self.uid = meta["uid"]
        self.stop_requested = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.container_name = f"fakenode-{self.uid}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.pod_name}-", dir=node.workdir))
        self.log_path = node.log_path(self.namespace, self.pod_name)
        self.grace = min(int(pod["spec"].get("terminationGracePeriodSeconds") or 30), 10)
        self._lock = threading.Lock()
        self.last_state: dict | None = None  # the previous run's terminated state

    # -- API helpers -------------------------------------------------------
    def _patch_status(self, status: dict[str, Any]) -> None:
        """Patched; retried for a minute while the API server does not answer (restarted),
        as a kubelet keeps trying: a pod's end must not be lost."""
        deadline = time.monotonic() + 60
        while True:
            try:
                self.node.core.patch_namespaced_pod_status(
                    self.pod_name, self.namespace, {"metadata": {"uid": self.uid}, "status": status}
                )
                return
            except ApiException as exc:
                if exc.status not in (404, 409, 422):
                    log.warning("fake node: status patch of %s failed: %s", self.pod_name, exc)
                return
            except urllib3.exceptions.HTTPError:
                if time.monotonic() > deadline or self.stop_requested.wait(0.5):
                    raise

    def _container_status(self, state: dict, restarts: int, ready: bool) -> dict:
        c = self.pod["spec"]["containers"][0]
        status = {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "fake://" + c.get("image", ""),
            "containerID": f"fake://{self.uid}/{restarts}",
            "ready": ready,
            "started": "running" in state,
            "restartCount": restarts,
            "state": state,
        }
        if self.last_state:
            status["lastState"] = self.last_state
        return status

    def _conditions(self, ready: bool, reason: str | None = None) -> list[dict]:
        t = _now()
        value = "True" if ready else "False"
        conds = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
            {"type": "Initialized", "status": "True", "lastTransitionTime": t},
            {"type": "ContainersReady", "status": value, "lastTransitionTime": t},
            {"type": "Ready", "status": value, "lastTransitionTime": t},
        ]
        if reason and not ready:
            for cond in conds[2:]:
                cond["reason"] = reason
        return conds

    def _report_setup_failure(self, message: str) -> None:
        self.node._append_log(self.log_path, f"[fake node] pod setup failed: {message}\n")
        t = _now()
        self._patch_status(
            {
                "phase": "Failed",
                "reason": "FakeNodeSetupError",
                "message": message,
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "startTime": t,
                "conditions": self._conditions(False, "PodFailed"),
                "containerStatuses": [
                    self._container_status(
                        {
                            "terminated": {
                                "exitCode": 128,
                                "reason": "ContainerCannotRun",
                                "message": message,
                                "startedAt": t,
                                "finishedAt": t,
                            }
                        },
                        0,
                        False,
                    )
                ],
            }
        )

    def _report_refused(self, message: str) -> None:
        """As a kubelet reports a container it will not create: Pending, Waiting."""
        self.node._append_log(self.log_path, f"[fake node] refused: {message}\n")
        self._patch_status(
            {
                "phase": "Pending",
                "hostIP": "127.0.0.1",
                "conditions": self._conditions(False, "ContainersNotReady"),
                "containerStatuses": [
                    self._container_status(
                        {"waiting": {"reason": "CreateContainerConfigError", "message": message}},
                        0,
                        False,
                    )
                ],
            }
        )

    # -- env & volumes -----------------------------------------------------
    def _secret(self, name: str, optional: bool) -> dict[str, str] | None:
        try:
            secret = self.node.core.read_namespaced_secret(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                if optional:
                    return None
                raise _NotReady(f"secret {name} not found") from exc
            raise
        return {
            k: base64.b64decode(v).decode("utf-8", "replace")
            for k, v in (secret.data or {}).items()
        }

    def _config_map(self, name: str, optional: bool) -> dict[str, str] | None:
        try:
            cm = self.node.core.read_namespaced_config_map(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                if optional:
                    return None
                raise _NotReady(f"configmap {name} not found") from exc
            raise
        return dict(cm.data or {})

    def _field(self, path: str) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        simple = {
            "metadata.name": meta.get("name"),
            "metadata.namespace": meta.get("namespace"),
            "metadata.uid": meta.get("uid"),
            "spec.nodeName": self.node.name,
            "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
            "status.podIP": "127.0.0.1",
            "status.podIPs": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
            "status.hostIPs": "127.0.0.1",
        }
        if path in simple:
            return simple[path] or ""
        m = _FIELD_KEY.match(path)
        if m:
            return (meta.get(m.group(1)) or {}).get(m.group(2), "")
        if path in ("metadata.labels", "metadata.annotations"):
            items = meta.get(path.split(".")[1]) or {}
            return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
        raise PodSetupError(f"unsupported fieldRef {path!r}")

    def _resource(self, ref: dict) -> str:
        c = self.pod["spec"]["containers"][0]
        kind, _, res = ref.get("resource", "").partition(".")
        value = ((c.get("resources") or {}).get(kind) or {}).get(res)
        return str(value) if value is not None else "0"

    def _build_env(self, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                data = self._config_map(ref["name"], ref.get("optional", False)) or {}
            elif "secretRef" in source:
                ref = source["secretRef"]
                data = self._secret(ref["name"], ref.get("optional", False)) or {}
            else:
                continue
            env.update({prefix + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            name = item["name"]
            if "valueFrom" not in item:
                env[name] = expand_vars(item.get("value", ""), env)
                continue
            vf = item["valueFrom"]
            if "fieldRef" in vf:
                env[name] = self._field(vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                env[name] = self._resource(vf["resourceFieldRef"])
            elif "secretKeyRef" in vf:
                ref = vf["secretKeyRef"]
                data = self._secret(ref["name"], ref.get("optional", False))
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise _NotReady(f"key {ref['key']} of secret {ref['name']} not found")
                env[name] = data[ref["key"]]
            elif "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                data = self._config_map(ref["name"], ref.get("optional", False))
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise _NotReady(f"key {ref['key']} of configmap {ref['name']} not found")
                env[name] = data[ref["key"]]
            else:
                raise PodSetupError(f"unsupported valueFrom in env {name}: {vf}")
        return env

    @staticmethod
    def _write_items(directory: Path, data: dict[str, str], items: list | None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        pairs = (
            [(i["key"], i.get("path", i["key"])) for i in items]
            if items
            else [(k, k) for k in data]
        )
        for key, rel in pairs:
            if key not in data:
                continue
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[key])

    def _token_dir(self, directory: Path, rel_path: str, expiration: int | None) -> None:
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        body = {"spec": {"expirationSeconds": max(int(expiration or 3600), 600)}}
        token = self.node.core.create_namespaced_service_account_token(
            sa, self.namespace, body
        ).status.token
        target = directory / rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(token)

    def _volume_dir(self, vol: dict) -> Path:
        name = vol["name"]
        if "hostPath" in vol:
            path = Path(vol["hostPath"]["path"])
            if (vol["hostPath"].get("type") or "") in ("DirectoryOrCreate",):
                path.mkdir(parents=True, exist_ok=True)
            return path
        if "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]["claimName"]
            local = self.node.claim_path(self.namespace, claim)
            if local is None:
                raise _NotReady(
                    f"claim {self.namespace}/{claim} is not mapped: call "
                    "fake_node.map_claim(namespace, claim, local_path)"
                )
            fs_group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
            if self.node.mode == "container" and fs_group is not None:
                _own_by_group(local, int(fs_group))
            return local
        directory = self.workdir / "volumes" / name
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        if "emptyDir" in vol:
            return directory
        if "secret" in vol:
            src = vol["secret"]
            data = self._secret(src["secretName"], src.get("optional", False)) or {}
            self._write_items(directory, data, src.get("items"))
            return directory
        if "configMap" in vol:
            src = vol["configMap"]
            data = self._config_map(src["name"], src.get("optional", False)) or {}
            self._write_items(directory, data, src.get("items"))
            return directory
        if "downwardAPI" in vol:
            for item in vol["downwardAPI"].get("items") or []:
                if "fieldRef" in item:
                    value = self._field(item["fieldRef"]["fieldPath"])
                else:
                    value = self._resource(item.get("resourceFieldRef") or {})
                self._write_items(directory, {"v": value}, [{"key": "v", "path": item["path"]}])
            return directory
        if "projected" in vol:
            for source in vol["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    src = source["serviceAccountToken"]
                    self._token_dir(directory, src["path"], src.get("expirationSeconds"))
                elif "configMap" in source:
                    src = source["configMap"]
                    data = self._config_map(src["name"], src.get("optional", False)) or {}
                    self._write_items(directory, data, src.get("items"))
                elif "secret" in source:
                    src = source["secret"]
                    data = self._secret(src["name"], src.get("optional", False)) or {}
                    self._write_items(directory, data, src.get("items"))
                elif "downwardAPI" in source:
                    for item in source["downwardAPI"].get("items") or []:
                        value = self._field(item["fieldRef"]["fieldPath"])
                        self._write_items(
                            directory, {"v": value}, [{"key": "v", "path": item["path"]}]
                        )
            return directory
        raise PodSetupError(f"volume {name}: unsupported volume source {sorted(vol)}")

    def _prepare(self) -> _Launch:
        spec = self.pod["spec"]
        container = spec["containers"][0]
        ignored = [c["name"] for c in spec.get("initContainers") or []]
        ignored += [c["name"] for c in spec["containers"][1:]]
        if ignored:
            self.node._append_log(
                self.log_path, f"[fake node] NOT running containers {ignored} (first only)\n"
            )
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in volumes:
                raise PodSetupError(f"volumeMount {mount['name']} has no volume")
        pod_env = self._build_env(container)
        if self.node.mode == "container":
            return self._prepare_container(container, volumes, pod_env)
        return self._prepare_process(container, volumes, pod_env)

    def _prepare_container(
        self, container: dict, volumes: dict[str, dict], pod_env: dict[str, str]
    ) -> _Launch:
        """`docker run` of the container in its image (see containers.py)."""
        spec = self.pod["spec"]
        image = container.get("image", "")
        image_user = self.node.image_user(image)
        if image_user is None:
            raise PodSetupError(
                f"image {image!r} is not on the node (the fake node never pulls;"
                " scripts/images.sh builds Sendit's)"
            )
        vol_dirs: dict[str, Path] = {}
        mounts: list[containers.Mount] = []
        for mount in container.get("volumeMounts") or []:
            vol = volumes[mount["name"]]
            if "emptyDir" in vol:
                if mount.get("subPath"):
                    raise PodSetupError("the fake node mounts no subPath of an emptyDir")
                limit = vol["emptyDir"].get("sizeLimit")
                size = int(parse_quantity(limit)) if limit else None
                mounts.append(containers.Mount(mount["mountPath"], None, size=size))
                continue
            if mount["name"] not in vol_dirs:
                vol_dirs[mount["name"]] = self._volume_dir(vol)
            local = vol_dirs[mount["name"]]
            if mount.get("subPath"):
                local = local / mount["subPath"]
                local.mkdir(parents=True, exist_ok=True)
            read_only = bool(
                mount.get("readOnly")
                or (vol.get("persistentVolumeClaim") or {}).get("readOnly")
                or (vol.get("hostPath") or {}).get("readOnly")
                or set(vol) & {"secret", "configMap", "downwardAPI", "projected"}
            )
            mounts.append(containers.Mount(mount["mountPath"], str(local), read_only))
        server = urllib.parse.urlsplit(self.node.cluster.server)
        env = {
            **pod_env,
            # the `kubernetes` Service, as a kubelet sets it; at the API server itself, as
            # the container shares the host's network (there is no Service network here)
            "KUBERNETES_SERVICE_HOST": server.hostname or "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(server.port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(server.port),
            "HOSTNAME": self.pod_name,
            **{k: os.environ[k] for k in self.node.pass_env if k in os.environ},
        }
        expanded = {
            **container,
            "command": [expand_vars(a, pod_env) for a in container.get("command") or []],
            "args": [expand_vars(a, pod_env) for a in container.get("args") or []],
        }
        try:
            args = containers.run_args(
                name=self.container_name,
                image=image,
                image_user=image_user,
                pod_spec=spec,
                container=expanded,
                mounts=mounts,
                env_names=sorted(env),
                labels={NODE_LABEL: self.node.id},
            )
        except containers.Refused as exc:
            raise _Refused(str(exc)) from None
        cli_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_HOST")}
        return _Launch([self.node.docker, *args], {**cli_env, **env}, self.workdir)

    def _prepare_process(
        self, container: dict, volumes: dict[str, dict], pod_env: dict[str, str]
    ) -> _Launch:
        """The command as a local process, mount paths translated (see the module doc)."""
        spec = self.pod["spec"]
        command = list(container.get("command") or [])
        if not command:
            raise PodSetupError(
                "the fake node's process mode runs the container's explicit `command`; "
                f"container {container['name']!r} has none (image entrypoints are not known)"
            )
        argv = command + list(container.get("args") or [])
        vol_dirs: dict[str, Path] = {}
        path_map: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            vname = mount["name"]
            if vname not in vol_dirs:
                vol_dirs[vname] = self._volume_dir(volumes[vname])
            local = vol_dirs[vname]
            if mount.get("subPath"):
                local = local / mount["subPath"]
                local.mkdir(parents=True, exist_ok=True)
            path_map[mount["mountPath"]] = str(local)

        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env.pop("KUBECONFIG", None)
        env["HOSTNAME"] = self.pod_name
        for key, value in pod_env.items():
            env[key] = translate_paths(value, path_map)
        sa = spec.get("serviceAccountName") or "default"
        env["KUBECONFIG"] = str(
            self.node.cluster.token_kubeconfig(
                self.namespace, sa, path=self.workdir / "sa.kubeconfig"
            )
        )
        env["SENDIT_PATH_MAP"] = json.dumps(path_map)

        argv = [translate_paths(expand_vars(a, pod_env), path_map) for a in argv]
        wd = container.get("workingDir")
        cwd = Path(translate_paths(wd, path_map)) if wd else None
        if cwd is None or not cwd.is_dir():
            cwd = self.workdir / "cwd"
            cwd.mkdir(exist_ok=True)
        self.node._append_log(self.log_path, f"[fake node] map={path_map}\n")
        return _Launch(argv, env, cwd)

    # -- main loop ---------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception:  # never let a runner thread die silently
            log.exception("fake node: runner for %s/%s crashed", self.namespace, self.pod_name)
            self.node._append_log(self.log_path, "[fake node] runner crashed; see test log\n")
        finally:
            self.node._runner_done(self)

    def _run(self) -> None:
        # Wait (Pending) for what the pod needs, like a kubelet waits for volumes.
        last_wait = ""
        while True:
            if self.stop_requested.is_set():
                return
            try:
                launch = self._prepare()
                break
            except _NotReady as exc:
                if str(exc) != last_wait:
                    last_wait = str(exc)
                    self.node._append_log(self.log_path, f"[fake node] waiting: {exc}\n")
                    self._patch_status(
                        {
                            "phase": "Pending",
                            "hostIP": "127.0.0.1",
                            "conditions": self._conditions(False, "ContainersNotReady"),
                            "message": f"fake node waiting: {exc}",
                        }
                    )
                time.sleep(0.3)
            except PodSetupError as exc:
                self._report_setup_failure(str(exc))
                return
            except _Refused as exc:
                self._report_refused(str(exc))
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                self._report_setup_failure(f"API error while preparing: {exc.status} {exc.reason}")
                return

        restart_policy = self.pod["spec"].get("restartPolicy", "Always")
        restarts = 0
        start_time = _now()
        while True:
            started_at = _now()
            self.node._append_log(
                self.log_path, f"[fake node] run {json.dumps(launch.argv)} cwd={launch.cwd}\n"
            )
            with self._lock:
                if self.stop_requested.is_set():
                    return
                with open(self.log_path, "ab") as out:
                    self.proc = subprocess.Popen(
                        launch.argv,
                        env=launch.env,
                        cwd=launch.cwd,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
            self._patch_status(
                {
                    "phase": "Running",
                    "hostIP": "127.0.0.1",
                    "podIP": "127.0.0.1",
                    "podIPs": [{"ip": "127.0.0.1"}],
                    "startTime": start_time,
                    "conditions": self._conditions(True),
                    "containerStatuses": [
                        self._container_status(
                            {"running": {"startedAt": started_at}}, restarts, True
                        )
                    ],
                }
            )
            code = self.proc.wait()
            if code < 0:  # killed by a signal: report like a container runtime does
                code = 128 - code
            reason = "Completed" if code == 0 else "Error"
            if self.node.mode == "container":
                code, reason = self._container_exit(code)
            self.node._append_log(self.log_path, f"[fake node] exit code {code} ({reason})\n")
            terminated = {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": started_at,
                    "finishedAt": _now(),
                    "containerID": f"fake://{self.uid}/{restarts}",
                }
            }
            again = not self.stop_requested.is_set() and (
                restart_policy == "Always" or (restart_policy == "OnFailure" and code != 0)
            )
            if again:
                restarts += 1
                self.last_state = terminated
                status = self._container_status(
                    {"waiting": {"reason": "CrashLoopBackOff"}}, restarts, False
                )
                self._patch_status(
                    {
                        "phase": "Running",
                        "conditions": self._conditions(False, "ContainersNotReady"),
                        "containerStatuses": [status],
                    }
                )
                if self.stop_requested.wait(min(0.5 * restarts, 5)):
                    return
                continue
            self._patch_status(
                {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "conditions": self._conditions(
                        False, "PodCompleted" if code == 0 else "PodFailed"
                    ),
                    "containerStatuses": [self._container_status(terminated, restarts, False)],
                }
            )
            return

    def _container_exit(self, cli_code: int) -> tuple[int, str]:
        """The container's exit code and reason (OOMKilled...), then the container removed;
        the CLI's own code (125: the engine could not run it) if it was never created."""
        docker = self.node.docker
        found = self._container_state()
        if found is not None and found.get("Running"):
            # The CLI went (killed) and the container did not: the runtime's container is the
            # truth, as for a kubelet, so its own exit is waited for.
            subprocess.run([docker, "wait", self.container_name], capture_output=True, check=False)
            found = self._container_state()
        subprocess.run(
            [docker, "rm", "--force", self.container_name], capture_output=True, check=False
        )
        if found is None:
            return cli_code, "ContainerCannotRun"
        code = int(found.get("ExitCode", cli_code))
        if found.get("OOMKilled"):
            return code, "OOMKilled"
        return code, "Completed" if code == 0 else "Error"

    def _container_state(self) -> dict[str, Any] | None:
        state = subprocess.run(
            [self.node.docker, "inspect", "--format", "{{json .State}}", self.container_name],
            capture_output=True,
            text=True,
            check=False,
        )
        return json.loads(state.stdout) if state.returncode == 0 else None

    def kill(self) -> None:
        """Stop the container or process (SIGTERM, then SIGKILL after the grace period)."""
        self.stop_requested.set()
        with self._lock:
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if self.node.mode == "container":
            subprocess.run(
                [self.node.docker, "stop", "--time", str(self.grace), self.container_name],
                capture_output=True,
                check=False,
                timeout=self.grace + 30,
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is not None:
                return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class _LogServer(http.server.ThreadingHTTPServer):
    """The kubelet's log endpoint, so `kubectl logs` works: the API server proxies
    /containerLogs/NS/POD/CONTAINER to the Node's kubeletEndpoint on its InternalIP (it checks
    no kubelet certificate here; this server checks no client). It serves the Pod's output
    without the fake node's own lines (tailLines honoured; no follow, no previous)."""

    daemon_threads = True

    def __init__(self, node: FakeNode):
        self.node = node
        super().__init__(("127.0.0.1", 0), _LogHandler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pki = node.cluster.pki  # the API server's serving pair: its SANs hold 127.0.0.1
        tls.load_cert_chain(str(pki.serving_cert), str(pki.serving_key))
        self.socket = tls.wrap_socket(self.socket, server_side=True)


class _LogHandler(http.server.BaseHTTPRequestHandler):
    server: _LogServer

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            self.send_error(404)
            return
        lines = [
            line
            for line in self.server.node.logs(parts[1], parts[2]).splitlines(keepends=True)
            if not line.startswith("[fake node]")
        ]
        tail = urllib.parse.parse_qs(url.query).get("tailLines")
        if tail:
            lines = lines[-int(tail[0]) :] if int(tail[0]) else []
        body = "".join(lines).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # not on the test's stderr
        pass


class FakeNode:
    """The ``fake_node`` fixture's object. See the module docstring."""

    def __init__(
        self,
        cluster,
        name: str = NODE_NAME,
        workdir: Path | None = None,
        mode: str | None = None,
    ):
        self.cluster = cluster
        self.name = name
        self.mode = mode or os.environ.get(MODE_ENV) or "container"
        if self.mode not in ("container", "process"):
            raise ValueError(f"{MODE_ENV} is 'container' (the default) or 'process'")
        self.docker = shutil.which("docker") or "docker"
        self.pass_env = PASS_ENV
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sendit-fakenode-"))
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self._watch_api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self._api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self._api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 16
        self.core = client.CoreV1Api(self._api)
        self._claims: dict[tuple[str, str], Path] = {}
        self._runners: dict[str, _PodRunner] = {}
        self._finalised: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        self.runtime = "fake://local-process"
        self._logs: _LogServer | None = None
        self.id = self.workdir.name  # labels this node's containers

    def image_user(self, image: str) -> str | None:
        """The image's USER ("" = root), or None if the engine does not have the image."""
        found = subprocess.run(
            [self.docker, "image", "inspect", "--format", "{{json .Config.User}}", image],
            capture_output=True,
            text=True,
            check=False,
        )
        return json.loads(found.stdout) if found.returncode == 0 else None

    # -- public API ----------------------------------------------------------
    def map_claim(self, namespace: str, claim: str, local_path: str | os.PathLike) -> Path:
        """Mount ``local_path`` wherever Pods in ``namespace`` use PVC ``claim``."""
        path = Path(local_path)
        path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._claims[(namespace, claim)] = path
        return path

    def add_claim(self, namespace: str, claim: str, local_path: str | os.PathLike) -> Path:
        """A ReadWriteMany PersistentVolumeClaim ``claim`` made in the API, its volume
        ``local_path`` here (a shared workspace, as a storage class with RWX would give)."""
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        self.core.create_namespaced_persistent_volume_claim(namespace, body)
        return self.map_claim(namespace, claim, local_path)

    def unmap_claim(self, namespace: str, claim: str) -> None:
        with self._lock:
            self._claims.pop((namespace, claim), None)

    def claim_path(self, namespace: str, claim: str) -> Path | None:
        with self._lock:
            return self._claims.get((namespace, claim))

    def log_path(self, namespace: str, pod_name: str) -> Path:
        return self.workdir / "logs" / f"{namespace}_{pod_name}.log"

    def logs(self, namespace: str, pod_name: str) -> str:
        """stdout+stderr of the Pod's process (plus ``[fake node]`` lines)."""
        path = self.log_path(namespace, pod_name)
        return path.read_text(errors="replace") if path.exists() else ""

    def running_pods(self) -> list[str]:
        with self._lock:
            return sorted(f"{r.namespace}/{r.pod_name}" for r in self._runners.values())

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> FakeNode:
        if self.mode == "container":
            engine = subprocess.run(
                [self.docker, "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                text=True,
                check=False,
            )
            if engine.returncode != 0:
                raise RuntimeError(
                    "the fake node runs Pods in containers and no Docker engine answers"
                    f" ({engine.stderr.strip()}): start one with `bash scripts/images.sh`,"
                    f" or set {MODE_ENV}=process for local processes"
                )
            self.runtime = f"docker://{engine.stdout.strip()}"
        self._logs = _LogServer(self)
        threading.Thread(target=self._logs.serve_forever, name="fakenode-logs", daemon=True).start()
        self._register_node()
        self._thread = threading.Thread(target=self._loop, name="fakenode-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.kill()
        for runner in runners:
            runner.join(15)
        if self._thread:
            self._thread.join(15)
        if self._logs:
            self._logs.shutdown()
            self._logs.server_close()
        if self.mode == "container":  # anything a race left behind
            left = subprocess.run(
                [self.docker, "ps", "-aq", "--filter", f"label={NODE_LABEL}={self.id}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            if left:
                subprocess.run([self.docker, "rm", "--force", *left], capture_output=True)

    def _register_node(self) -> None:
        t = _now()
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "sendit.test/fake-node": "true",
                },
                "annotations": {"sendit.test/note": f"test double: runs pods as {self.mode}es"},
            },
        }
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        cap = {"cpu": "16", "memory": "64Gi", "pods": "500", "ephemeral-storage": "100Gi"}
        self.core.patch_node_status(
            self.name,
            {
                "status": {
                    "capacity": cap,
                    "allocatable": cap,
                    # no Hostname address: the API server would try to resolve it to reach
                    # the log endpoint
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": self._logs.server_port}},
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "FakeNodeReady",
                            "message": "sendit fake node (test double)",
                            "lastHeartbeatTime": t,
                            "lastTransitionTime": t,
                        }
                    ],
                    "nodeInfo": {
                        "kubeletVersion": "fake",
                        "containerRuntimeVersion": self.runtime,
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                        "osImage": f"sendit fake node ({self.mode} mode)",
                        "kernelVersion": "",
                        "kubeProxyVersion": "",
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                    },
                }
            },
        )

    # -- watch loop ----------------------------------------------------------
    def _loop(self) -> None:
        api = client.CoreV1Api(self._watch_api)
        rv = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    listing = api.list_pod_for_all_namespaces(_preload_content=False)
                    data = json.loads(listing.data)
                    rv = data["metadata"]["resourceVersion"]
                    for pod in data.get("items") or []:
                        self._handle("ADDED", pod)
                w = watch.Watch()
                for event in w.stream(
                    api.list_pod_for_all_namespaces,
                    resource_version=rv,
                    timeout_seconds=3,
                    allow_watch_bookmarks=True,
                    _preload_content=False,
                ):
                    if self._stop.is_set():
                        w.stop()
                        break
                    obj = event["raw_object"]
                    if event["type"] == "ERROR":
                        rv = None
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if event["type"] != "BOOKMARK":
                        self._handle(event["type"], obj)
            except ApiException as exc:
                if exc.status == 410:
                    rv = None
                    continue
                self._record_error(f"watch: {exc}")
                time.sleep(0.5)
            except Exception as exc:
                if self._stop.is_set():
                    break
                self._record_error(f"watch: {exc!r}")
                rv = None
                time.sleep(0.5)

    def _record_error(self, message: str) -> None:
        log.warning("fake node: %s", message)
        self.errors.append(message)
        del self.errors[:-50]

    def _handle(self, kind: str, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        uid = meta["uid"]
        node = spec.get("nodeName")
        deleting = meta.get("deletionTimestamp") is not None
        if kind == "DELETED":
            with self._lock:
                runner = self._runners.get(uid)
            if runner:
                threading.Thread(target=runner.kill, daemon=True).start()
            return
        if not node:
            if not deleting:
                self._bind(meta["namespace"], meta["name"])
            return
        if node != self.name:
            return
        phase = (pod.get("status") or {}).get("phase")
        with self._lock:
            runner = self._runners.get(uid)
            if runner is None and not deleting and phase not in ("Succeeded", "Failed"):
                if uid in self._finalised:
                    return
                runner = _PodRunner(self, pod)
                self._runners[uid] = runner
                self._finalised.add(uid)  # never start the same pod twice
                runner.start()
                return
        if deleting:
            threading.Thread(
                target=self._finalise_deletion, args=(runner, pod), daemon=True
            ).start()

    def _bind(self, namespace: str, name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.name},
        }
        try:
            self.core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False)
        except ApiException as exc:
            if exc.status not in (404, 409):
                self._record_error(f"bind {namespace}/{name}: {exc.status} {exc.body}")

    def _finalise_deletion(self, runner: _PodRunner | None, pod: dict[str, Any]) -> None:
        """Kill the process, then complete the graceful deletion as a kubelet does."""
        meta = pod["metadata"]
        key = "deleted:" + meta["uid"]
        with self._lock:
            if key in self._finalised:
                return
            self._finalised.add(key)
        if runner is not None:
            runner.kill()
            runner.join(15)
        try:
            self.core.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])
                ),
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                self._record_error(f"delete {meta['namespace']}/{meta['name']}: {exc}")

    def _runner_done(self, runner: _PodRunner) -> None:
        with self._lock:
            self._runners.pop(runner.uid, None)

    @staticmethod
    def _append_log(path: Path, text: str) -> None:
        with open(path, "a") as out:
            out.write(text)
