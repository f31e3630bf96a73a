"""Tests of the test harness itself: the real control plane and the fake node."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from polling import wait_for

pytestmark = pytest.mark.controlplane

# The fake node runs pods in their images (container mode) or as local processes (process mode,
# opt-in): the same pods work in both, with paths under their mounts and `python`.
PROCESS_MODE = os.environ.get("SENDIT_FAKENODE") == "process"
PY = sys.executable if PROCESS_MODE else "python"
IMAGE = os.environ.get("SENDIT_WORKER_IMAGE", "sendit-worker:test")
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}
# The API as the pod's ServiceAccount: in-cluster config in a container, KUBECONFIG as a process.
WHOAMI = """
from kubernetes import client, config
try:
    config.load_incluster_config()
except config.ConfigException:
    config.load_kube_config()
review = client.AuthenticationV1Api().create_self_subject_review({})
"""


@pytest.fixture
def namespace(kube_cluster):
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube_cluster.kubectl("create", "namespace", name)
    # the serviceaccount controller creates `default`; pods need it to be admitted
    wait_for(
        lambda: (
            kube_cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0
        ),
        what=f"default ServiceAccount in {name}",
    )
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def get_json(cluster, *args):
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def job_condition(cluster, namespace, name):
    job = get_json(cluster, "job", name, "-n", namespace)
    for cond in job.get("status", {}).get("conditions") or []:
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return cond["type"]
    return None


def job_yaml(name, command, **extra):
    """A Job of one pod in the worker image (it has python and the Kubernetes client), run as
    the operator runs its pods (restricted); `out=DIR` mounts DIR at /out (a hostPath)."""
    spec = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": extra.pop("backoff_limit", 0),
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": dict(RESTRICTED_POD),
                    "containers": [
                        {
                            "name": "main",
                            "image": IMAGE,
                            "command": command,
                            "securityContext": dict(RESTRICTED_CONTAINER),
                        }
                    ],
                }
            },
        },
    }
    pod = spec["spec"]["template"]["spec"]
    if "out" in extra:
        out = Path(extra.pop("out"))
        out.chmod(0o777)  # a hostPath gets no fsGroup: writable by the pod's user
        pod["volumes"] = [{"name": "out", "hostPath": {"path": str(out)}}]
        pod["containers"][0]["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
    spec["spec"].update(extra.pop("job_spec", {}))
    pod.update(extra.pop("pod_spec", {}))
    pod["containers"][0].update(extra.pop("container", {}))
    if "pod_labels" in extra:
        spec["spec"]["template"]["metadata"] = {"labels": extra.pop("pod_labels")}
    assert not extra, extra
    return json.dumps(spec)


# ------------------------------------------------------------------ control plane


def test_control_plane_ready_and_kubectl_works(kube_cluster):
    assert kube_cluster.server.startswith("https://127.0.0.1:")
    assert kube_cluster.ready_seconds < 30, kube_cluster.ready_seconds
    out = kube_cluster.kubectl("get", "--raw", "/readyz").stdout
    assert out.strip() == "ok"
    version = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.33.")
    assert "yes" in kube_cluster.kubectl("auth", "can-i", "*", "*").stdout
    from kubernetes import client

    core = client.CoreV1Api(kube_cluster.api_client())
    assert core.read_namespace("default").metadata.name == "default"


def test_crd_is_applied_and_served(kube_cluster, namespace):
    group = "harness.sendit.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                    "subresources": {"status": {}},
                }
            ],
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=30s"
    )
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"size": 3},
    }
    # discovery may lag the Established condition by a moment
    wait_for(
        lambda: (
            kube_cluster.kubectl(
                "apply", "-f", "-", input=json.dumps(widget), check=False
            ).returncode
            == 0
        ),
        timeout=20,
        what="widget accepted",
    )
    got = get_json(kube_cluster, "widget", "w1", "-n", namespace)
    assert got["spec"] == {"size": 3}
    # the structural schema is enforced by the real API server
    bad = dict(widget, metadata={"name": "w2", "namespace": namespace}, spec={"size": 0})
    res = kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert res.returncode != 0
    assert "spec.size" in res.stderr


def test_owned_child_is_garbage_collected(kube_cluster, namespace):
    kube_cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = get_json(kube_cluster, "configmap", "owner", "-n", namespace)
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
    }
    kube_cluster.kubectl("create", "-f", "-", input=json.dumps(child))
    kube_cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: (
            kube_cluster.kubectl(
                "get", "configmap", "child", "-n", namespace, check=False
            ).returncode
            != 0
        ),
        timeout=60,
        what="garbage collection of the child",
    )


def test_rbac_denies_and_allows(kube_cluster, namespace):
    kube_cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubeconfig = kube_cluster.token_kubeconfig(namespace, "reader")
    text = kubeconfig.read_text()
    assert "token" in text and "client-key" not in text

    whoami = kube_cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout
    assert json.loads(whoami)["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{namespace}:reader"
    )

    denied = kube_cluster.kubectl("get", "configmaps", kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    kube_cluster.kubectl(
        "create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", namespace
    )
    kube_cluster.kubectl(
        "create", "rolebinding", "cm-reader", "--role=cm-reader",
        f"--serviceaccount={namespace}:reader", "-n", namespace,
    )  # fmt: skip
    wait_for(
        lambda: (
            kube_cluster.kubectl("get", "configmaps", kubeconfig=kubeconfig, check=False).returncode
            == 0
        ),
        timeout=20,
        what="RBAC to allow listing configmaps",
    )
    # still denied: writes, other namespaces, cluster-scoped reads
    for args in (
        ("create", "configmap", "nope"),
        ("get", "configmaps", "-n", "default"),
        ("get", "nodes"),
        ("get", "secrets"),
    ):
        res = kube_cluster.kubectl(*args, kubeconfig=kubeconfig, check=False)
        assert res.returncode != 0 and "forbidden" in res.stderr.lower(), args


# ---------------------------------------------------------------------- fake node


def test_fake_node_is_registered_ready(kube_cluster, fake_node):
    node = get_json(kube_cluster, "node", "sendit-fake-node")
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"


def test_job_created_with_kubectl_completes(kube_cluster, fake_node, namespace, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir(mode=0o777)
    out_dir.chmod(0o777)  # a hostPath gets no fsGroup: writable by the pod's user
    data_dir = fake_node.map_claim(namespace, "data", tmp_path / "pvc")
    (data_dir / "input.txt").write_text("hello from the claim")
    kube_cluster.kubectl("create", "secret", "generic", "creds", "--from-literal=password=s3cr3t",
                         "-n", namespace)  # fmt: skip
    kube_cluster.kubectl("create", "configmap", "settings", "--from-literal=mode=fast",
                         "--from-literal=settings.yaml=a: 1", "-n", namespace)  # fmt: skip
    script = WHOAMI + textwrap.dedent(
        """
        import json, os, pathlib, sys
        out = pathlib.Path(sys.argv[1])
        report = {k: os.environ.get(k) for k in (
            "POD_NAME", "POD_NAMESPACE", "SA", "PASSWORD", "MODE", "GREETING", "APP_LABEL")}
        report["input"] = pathlib.Path(sys.argv[5]).read_text()
        report["input_via_env"] = pathlib.Path(os.environ["DATA_FILE"]).read_text()
        report["settings"] = pathlib.Path(sys.argv[2]).read_text()
        report["whoami"] = review.status.user_info.username
        report["token"] = pathlib.Path(sys.argv[3]).read_text().count(".") == 2
        (out / "report.json").write_text(json.dumps(report))
        pathlib.Path(sys.argv[4]).write_text("written to the claim")
        print("job done")
        """
    )
    manifest = job_yaml(
        "hello",
        [PY, "-c", script],
        container={
            "args": [
                "/out",
                "/etc/settings/settings.yaml",
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
                "/data/output.txt",
                "/data/input.txt",
            ],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {
                    "name": "POD_NAMESPACE",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                },
                {
                    "name": "SA",
                    "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}},
                },
                {
                    "name": "APP_LABEL",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}},
                },
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                },
                {
                    "name": "MODE",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
                },
                {"name": "GREETING", "value": "hi $(POD_NAMESPACE)"},
                {"name": "DATA_FILE", "value": "/data/input.txt"},
            ],
            "volumeMounts": [
                {"name": "out", "mountPath": "/out"},
                {"name": "data", "mountPath": "/data"},
                {"name": "settings", "mountPath": "/etc/settings"},
                {"name": "scratch", "mountPath": "/scratch"},
            ],
        },
        pod_labels={"app": "hello"},
        pod_spec={
            "volumes": [
                {"name": "out", "hostPath": {"path": str(out_dir)}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "settings", "configMap": {"name": "settings"}},
                {"name": "scratch", "emptyDir": {}},
            ]
        },
    )
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)
    result = wait_for(
        lambda: job_condition(kube_cluster, namespace, "hello"), timeout=90, what="job to finish"
    )
    pods = get_json(kube_cluster, "pods", "-n", namespace, "-l", "job-name=hello")["items"]
    assert len(pods) == 1
    pod = pods[0]
    logs = fake_node.logs(namespace, pod["metadata"]["name"])
    assert result == "Complete", logs
    assert "job done" in logs
    assert pod["spec"]["nodeName"] == "sendit-fake-node"
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    report = json.loads((out_dir / "report.json").read_text())
    assert report == {
        "POD_NAME": pod["metadata"]["name"],
        "POD_NAMESPACE": namespace,
        "SA": "default",
        "PASSWORD": "s3cr3t",
        "MODE": "fast",
        "GREETING": f"hi {namespace}",
        "APP_LABEL": "hello",
        "input": "hello from the claim",
        "input_via_env": "hello from the claim",
        "settings": "a: 1",
        "whoami": f"system:serviceaccount:{namespace}:default",
        "token": True,
    }
    assert (data_dir / "output.txt").read_text() == "written to the claim"
    job = get_json(kube_cluster, "job", "hello", "-n", namespace)
    assert job["status"]["succeeded"] == 1


def test_failing_job_is_marked_failed(kube_cluster, fake_node, namespace):
    manifest = job_yaml("boom", [PY, "-c", "import sys; print('bad'); sys.exit(3)"])
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)
    result = wait_for(
        lambda: job_condition(kube_cluster, namespace, "boom"), timeout=90, what="job to finish"
    )
    assert result == "Failed"
    pod = get_json(kube_cluster, "pods", "-n", namespace, "-l", "job-name=boom")["items"][0]
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert "bad" in fake_node.logs(namespace, pod["metadata"]["name"])
    # `kubectl logs`: the API server asks the node's log endpoint for the Pod's own output
    logs = kube_cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"])
    assert logs.stdout == "bad\n"


def test_indexed_job_gets_completion_index(kube_cluster, fake_node, namespace, tmp_path):
    manifest = job_yaml(
        "indexed",
        [
            PY,
            "-c",
            "import os, sys; "
            "open(sys.argv[1] + '/' + os.environ['JOB_COMPLETION_INDEX'], 'w').close()",
        ],
        job_spec={"completionMode": "Indexed", "completions": 3, "parallelism": 3},
        out=tmp_path,
        container={"args": ["/out"]},
    )
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)
    result = wait_for(
        lambda: job_condition(kube_cluster, namespace, "indexed"), timeout=90, what="job"
    )
    assert result == "Complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1", "2"]


def test_deleting_a_job_kills_its_process(kube_cluster, fake_node, namespace, tmp_path):
    marker = tmp_path / "started"
    manifest = job_yaml(
        "sleeper",
        [PY, "-c", "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(600)"],
        out=tmp_path,
        container={"args": ["/out/started"]},
    )
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)
    wait_for(marker.exists, timeout=60, what="the process to start")
    pod = get_json(kube_cluster, "pods", "-n", namespace, "-l", "job-name=sleeper")["items"][0]
    assert pod["status"]["phase"] == "Running"
    assert f"{namespace}/{pod['metadata']['name']}" in fake_node.running_pods()
    kube_cluster.kubectl("delete", "job", "sleeper", "-n", namespace, "--cascade=foreground",
                         "--timeout=60s")  # fmt: skip
    wait_for(
        lambda: not get_json(kube_cluster, "pods", "-n", namespace)["items"],
        timeout=60,
        what="the pod to be gone",
    )
    wait_for(lambda: not fake_node.running_pods(), timeout=30, what="the process to be killed")


def test_pvc_pod_waits_for_claim_mapping(kube_cluster, fake_node, namespace, tmp_path):
    manifest = job_yaml(
        "claimer",
        [PY, "-c", "import sys; open(sys.argv[1], 'w').write('ok')"],
        container={
            "args": ["/work/out.txt"],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        },
        pod_spec={"volumes": [{"name": "work", "persistentVolumeClaim": {"claimName": "late"}}]},
    )
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)
    wait_for(
        lambda: get_json(kube_cluster, "pods", "-n", namespace)["items"],
        what="the pod to be created",
    )
    time.sleep(1)
    assert job_condition(kube_cluster, namespace, "claimer") is None
    pod = get_json(kube_cluster, "pods", "-n", namespace)["items"][0]
    assert pod["status"]["phase"] == "Pending"
    fake_node.map_claim(namespace, "late", tmp_path)
    assert wait_for(lambda: job_condition(kube_cluster, namespace, "claimer")) == "Complete"
    assert Path(tmp_path, "out.txt").read_text() == "ok"


def test_on_failure_restarts_in_place(kube_cluster, fake_node, namespace, tmp_path):
    script = (
        "import pathlib, sys; m = pathlib.Path(sys.argv[1]); "
        "first = not m.exists(); m.touch(); sys.exit(7 if first else 0)"
    )
    manifest = job_yaml(
        "flaky",
        [PY, "-c", script],
        backoff_limit=3,
        out=tmp_path,
        container={"args": ["/out/marker"]},
        pod_spec={"restartPolicy": "OnFailure"},
    )
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)
    assert wait_for(lambda: job_condition(kube_cluster, namespace, "flaky")) == "Complete"
    pods = get_json(kube_cluster, "pods", "-n", namespace, "-l", "job-name=flaky")["items"]
    assert len(pods) == 1
    status = pods[0]["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 7


def test_suspending_a_job_stops_its_pod(kube_cluster, fake_node, namespace, tmp_path):
    marker = tmp_path / "started"
    manifest = job_yaml(
        "pausable",
        [PY, "-c", "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(600)"],
        out=tmp_path,
        container={"args": ["/out/started"]},
    )
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)
    wait_for(marker.exists, timeout=60, what="the process to start")
    kube_cluster.kubectl(
        "patch", "job", "pausable", "-n", namespace, "--type=merge", "-p",
        '{"spec": {"suspend": true}}',
    )  # fmt: skip

    def suspended():
        job = get_json(kube_cluster, "job", "pausable", "-n", namespace)
        conds = {c["type"]: c["status"] for c in job["status"].get("conditions") or []}
        pods = get_json(kube_cluster, "pods", "-n", namespace)["items"]
        return conds.get("Suspended") == "True" and not pods and not fake_node.running_pods()

    wait_for(suspended, timeout=60, what="the job to be suspended and its pod gone")
    assert not fake_node.errors, fake_node.errors


container_mode = pytest.mark.skipif(PROCESS_MODE, reason="process mode enforces none of it")


@container_mode
def test_the_container_runs_restricted_in_its_image(kube_cluster, fake_node, namespace, tmp_path):
    """The Pod's securityContext and limits, as the container sees them from inside."""
    script = textwrap.dedent(
        """
        import json, os, pathlib
        lines = open("/proc/self/status").read().splitlines()
        status = dict(line.split(":\t", 1) for line in lines)
        def writable(path):
            try:
                pathlib.Path(path, "probe").write_text("x")
                return True
            except OSError:
                return False
        limit = pathlib.Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        if not limit.exists():
            limit = pathlib.Path("/sys/fs/cgroup/memory.max")
        print(json.dumps({
            "ids": [os.getuid(), os.getgid(), sorted(os.getgroups())],
            "caps": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
            "seccomp": status["Seccomp"].strip(), "memory": limit.read_text().strip(),
            "root": writable("/"), "scratch": writable("/scratch"), "ro": writable("/ro"),
            "out": writable("/out"),
        }))
        """
    )
    (tmp_path / "ro").mkdir(mode=0o777)
    manifest = job_yaml(
        "restricted",
        [PY, "-c", script],
        out=tmp_path / "ro",
        container={
            "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
            "volumeMounts": [
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "out", "mountPath": "/ro", "readOnly": True},
                {"name": "out", "mountPath": "/out"},
            ],
        },
        pod_spec={
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "out", "hostPath": {"path": str(tmp_path / "ro")}},
            ]
        },
    )
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)
    result = wait_for(lambda: job_condition(kube_cluster, namespace, "restricted"), timeout=90)
    pod = get_json(kube_cluster, "pods", "-n", namespace, "-l", "job-name=restricted")["items"][0]
    logs = fake_node.logs(namespace, pod["metadata"]["name"])
    assert result == "Complete", logs
    seen = json.loads(logs.splitlines()[-2])  # the last line is the node's "exit code 0"
    assert seen == {
        "ids": [10001, 10001, [10001]],
        "caps": "0000000000000000",
        "no_new_privs": "1",
        "seccomp": "2",  # filtered: the runtime's default profile
        "memory": str(256 * 1024 * 1024),
        "root": False,
        "scratch": True,
        "ro": False,
        "out": True,
    }
    node = get_json(kube_cluster, "node", "sendit-fake-node")
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")


@container_mode
def test_the_image_entrypoint_runs_with_the_pods_args(kube_cluster, fake_node, namespace):
    manifest = job_yaml("entry", [], container={"args": ["sample", "--help"]})
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)
    assert wait_for(lambda: job_condition(kube_cluster, namespace, "entry"), timeout=90) == (
        "Complete"
    )
    pod = get_json(kube_cluster, "pods", "-n", namespace, "-l", "job-name=entry")["items"][0]
    assert "usage: sendit sample" in fake_node.logs(namespace, pod["metadata"]["name"])


@container_mode
def test_over_the_memory_limit_is_oom_killed(kube_cluster, fake_node, namespace):
    manifest = job_yaml(
        "hungry",
        [PY, "-c", "x = bytearray(512 * 1024 * 1024); print(len(x))"],
        container={"resources": {"limits": {"memory": "64Mi"}}},
    )
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)
    assert wait_for(lambda: job_condition(kube_cluster, namespace, "hungry"), timeout=90) == (
        "Failed"
    )
    pod = get_json(kube_cluster, "pods", "-n", namespace, "-l", "job-name=hungry")["items"][0]
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)


@container_mode
def test_a_pod_whose_engine_client_dies_reports_its_containers_own_exit(
    kube_cluster, fake_node, namespace
):
    """The `docker run` client the node holds is not the pod: when it is killed, the container
    runs on and the Pod reports the container's exit (here 3), not the client's."""
    import psutil

    manifest = job_yaml("orphan", [PY, "-c", "import time; time.sleep(4); raise SystemExit(3)"])
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)

    def client() -> psutil.Process | None:
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if cmd[:2] == [fake_node.docker, "run"] and "time.sleep(4)" in " ".join(cmd):
                return p
        return None

    wait_for(client, timeout=60).kill()  # (the client this test's pod started)
    assert wait_for(lambda: job_condition(kube_cluster, namespace, "orphan"), timeout=90) == (
        "Failed"
    )
    pod = get_json(kube_cluster, "pods", "-n", namespace, "-l", "job-name=orphan")["items"][0]
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("Error", 3)


@container_mode
def test_run_as_non_root_refuses_a_root_user(kube_cluster, fake_node, namespace):
    """As a kubelet refuses it: the Pod stays Pending, its container waiting."""
    manifest = job_yaml("rooted", [PY, "-c", "print('ran')"], container={
        "securityContext": {**RESTRICTED_CONTAINER, "runAsUser": 0}})  # fmt: skip
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)

    def waiting():
        pods = get_json(kube_cluster, "pods", "-n", namespace, "-l", "job-name=rooted")["items"]
        statuses = pods[0].get("status", {}).get("containerStatuses") if pods else None
        return statuses and statuses[0]["state"].get("waiting") and pods[0]

    pod = wait_for(waiting, timeout=60, what="the container to be refused")
    assert pod["status"]["phase"] == "Pending"
    state = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert state["reason"] == "CreateContainerConfigError"
    assert "non-root" in state["message"]
    assert "ran" not in fake_node.logs(namespace, pod["metadata"]["name"])


@pytest.mark.parametrize(
    ("image_user", "refusal"),
    [
        ("", "image will run as root"),
        ("0:0", "image will run as root"),
        ("sendit", "non-numeric user (sendit)"),
        ("10001:10001", None),
    ],
)
def test_run_as_non_root_reads_the_image_user(image_user, refusal):
    from controlplane.containers import Refused, user_arg

    if refusal is None:
        assert user_arg({"runAsNonRoot": True}, image_user) is None  # the image's own user
        return
    with pytest.raises(Refused, match=re.escape(refusal)):
        user_arg({"runAsNonRoot": True}, image_user)


def test_docker_run_arguments_for_a_restricted_container():
    from controlplane.containers import Mount, run_args

    container = {
        "command": ["sendit"],
        "args": ["worker", "--shards", "2"],
        "securityContext": RESTRICTED_CONTAINER,
        "resources": {"limits": {"memory": "1Gi", "cpu": "2"}, "requests": {"cpu": "250m"}},
        "workingDir": "/sendit/work",
    }
    args = run_args(
        name="c",
        image="sendit-worker:test",
        image_user="10001:10001",
        pod_spec={"securityContext": RESTRICTED_POD},
        container=container,
        mounts=[Mount("/src", "/data", read_only=True), Mount("/tmp", None)],
        env_names=["TOKEN"],
        labels={"k": "v"},
    )
    assert " ".join(args) == (
        "run --name c --network host --pull never --label k=v --user 10001:10001"
        " --group-add 10001 --read-only --cap-drop ALL --security-opt no-new-privileges"
        " --memory 1073741824 --memory-swap 1073741824 --cpus 2.0 --cpu-shares 256"
        " --mount type=bind,src=/data,dst=/src,readonly --mount type=tmpfs,dst=/tmp,tmpfs-mode=1777"
        " -e TOKEN --workdir /sendit/work --entrypoint sendit sendit-worker:test worker --shards 2"
    )


def test_binaries_come_from_the_keyed_cache(controlplane_bin_dir):
    from controlplane import build

    assert controlplane_bin_dir == build.bin_dir()
    assert controlplane_bin_dir.parent.name == build.cache_key()
    assert not build.missing_binaries(controlplane_bin_dir)
    # a second call is a cache hit: no `go build`
    started = time.monotonic()
    assert build.ensure_built(verbose=False) == controlplane_bin_dir
    assert time.monotonic() - started < 1


def test_pod_failure_policy_sees_the_exit_code(kube_cluster, fake_node, namespace):
    manifest = job_yaml(
        "policy",
        [PY, "-c", "import sys; sys.exit(42)"],
        backoff_limit=5,
        job_spec={
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "main",
                            "operator": "In",
                            "values": [42],
                        },
                    }
                ]
            }
        },
    )
    kube_cluster.kubectl("create", "-f", "-", "-n", namespace, input=manifest)
    assert wait_for(lambda: job_condition(kube_cluster, namespace, "policy")) == "Failed"
    job = get_json(kube_cluster, "job", "policy", "-n", namespace)
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    assert job["status"].get("failed") == 1  # no retries despite backoffLimit 5
