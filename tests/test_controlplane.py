"""Tests of the test harness itself: the real control plane and the fake node."""

from __future__ import annotations

import json
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from polling import wait_for

pytestmark = pytest.mark.controlplane

PY = sys.executable


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
    spec = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": extra.pop("backoff_limit", 0),
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "python:3.11-slim", "command": command}
                    ],
                }
            },
        },
    }
    spec["spec"].update(extra.pop("job_spec", {}))
    spec["spec"]["template"]["spec"].update(extra.pop("pod_spec", {}))
    spec["spec"]["template"]["spec"]["containers"][0].update(extra.pop("container", {}))
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
    out_dir.mkdir()
    data_dir = fake_node.map_claim(namespace, "data", tmp_path / "pvc")
    (data_dir / "input.txt").write_text("hello from the claim")
    kube_cluster.kubectl("create", "secret", "generic", "creds", "--from-literal=password=s3cr3t",
                         "-n", namespace)  # fmt: skip
    kube_cluster.kubectl("create", "configmap", "settings", "--from-literal=mode=fast",
                         "--from-literal=settings.yaml=a: 1", "-n", namespace)  # fmt: skip
    script = textwrap.dedent(
        """
        import json, os, pathlib, subprocess, sys
        out = pathlib.Path(sys.argv[1])
        report = {k: os.environ.get(k) for k in (
            "POD_NAME", "POD_NAMESPACE", "SA", "PASSWORD", "MODE", "GREETING",
            "DATA_FILE", "APP_LABEL")}
        report["input"] = pathlib.Path("/data/input.txt".replace(
            "/data", json.loads(os.environ["SENDIT_PATH_MAP"])["/data"])).read_text()
        report["input_via_env"] = pathlib.Path(os.environ["DATA_FILE"]).read_text()
        report["settings"] = pathlib.Path(sys.argv[2]).read_text()
        report["whoami"] = subprocess.run(
            ["kubectl", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
            capture_output=True, text=True, check=True).stdout
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
                str(out_dir),
                "/etc/settings/settings.yaml",
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
                "/data/output.txt",
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
                {"name": "data", "mountPath": "/data"},
                {"name": "settings", "mountPath": "/etc/settings"},
                {"name": "scratch", "mountPath": "/scratch"},
            ],
        },
        pod_labels={"app": "hello"},
        pod_spec={
            "volumes": [
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
        "DATA_FILE": str(data_dir / "input.txt"),
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
        container={"args": [str(tmp_path)]},
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
        container={"args": [str(marker)]},
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
        container={"args": [str(tmp_path / "marker")]},
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
        container={"args": [str(marker)]},
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
