"""The operator on the real control plane (tests/controlplane): `kubectl apply` a batch, the
operator makes the Job, the fake node (the harness's node test double) runs `sendit worker`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from dicomdata import KEY

from sendit_worker.sample import make_sample

pytestmark = pytest.mark.controlplane
ROOT = Path(__file__).resolve().parents[1]
NS = "sendit-test"


@pytest.fixture(scope="module")
def cluster(kube_cluster, fake_node, tmp_path_factory):
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        kube_cluster.kubectl("apply", "-f", str(crd))
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
    kube_cluster.kubectl("create", "namespace", NS)
    kube_cluster.kubectl(
        "-n", NS, "create", "secret", "generic", "key", f"--from-literal=k={KEY.decode()}"
    )
    data = tmp_path_factory.mktemp("data")
    make_sample(data / "in" / "ST-1", patients=2, files=6)
    kube_cluster.data = data
    return kube_cluster


def start_operator(cluster, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    args = ["operator", "--namespace", NS, "--liveness-port", "0", "--metrics-port", "0"]
    return subprocess.Popen(
        ["sendit", *args, "--resync-seconds", "2"],
        env=env,
        stdout=open(tmp / "operator.log", "ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def operator(cluster, tmp_path):
    proc = start_operator(cluster, tmp_path)
    yield proc
    proc.terminate()
    proc.wait(20)


def manifest(name: str, data: Path, **spec) -> str:
    body = {
        "apiVersion": "sendit.dev/v1alpha1",
        "kind": "SenditBatch",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "source": {"volume": {"hostPath": {"path": str(data / "in")}}, "folders": ["ST-1"]},
            "deidentify": {"pseudonymKey": {"secretKeyRef": {"name": "key", "key": "k"}}},
            "destinations": {"local": {"path": str(data / "out" / name)}},
            "parallelism": 2,
            "image": "sendit:test",
            **spec,
        },
    }
    return json.dumps(body)


def get(cluster, name: str) -> dict:
    out = cluster.kubectl("-n", NS, "get", "sb", name, "-o", "json").stdout
    return json.loads(out)


def wait_phase(cluster, name: str, phase: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = get(cluster, name).get("status") or {}
        if status.get("phase") == phase:
            return status
        time.sleep(1)
    raise AssertionError(f"{name} never reached {phase}: {status}")


def jobs(cluster, name: str) -> list[str]:
    out = cluster.kubectl("-n", NS, "get", "jobs", "-l", f"sendit.dev/batch={name}", "-o", "name")
    return out.stdout.split()


def test_batch_reaches_sent_with_counts(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=manifest("auto", cluster.data))
    status = wait_phase(cluster, "auto", "Sent")
    assert status["counts"]["discovered"] == 6
    assert status["counts"]["sent"] == status["counts"]["anonymized"] > 0
    assert jobs(cluster, "auto") == ["job.batch/auto-process"]
    ready = {c["type"]: c["status"] for c in status["conditions"]}
    assert ready["Ready"] == ready["Delivered"] == "True"
    table = cluster.kubectl("-n", NS, "get", "sb", "auto").stdout
    assert "Sent" in table and "ANONYMIZED" in table


def test_manual_send(cluster, fake_node, operator, tmp_path):
    fake_node.map_claim(NS, "work", tmp_path)
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: work, namespace: {NS}}}
spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}
""",
    )
    work = {"persistentVolumeClaim": {"claimName": "work"}}
    cluster.kubectl(
        "apply", "-f", "-", input=manifest("manual", cluster.data, send="manual", workspace=work)
    )
    status = wait_phase(cluster, "manual", "DoneProcessing")
    assert status["counts"]["sent"] == 0
    cluster.kubectl(
        "-n", NS, "patch", "sb", "manual", "--type=merge", "-p", '{"spec":{"send":"auto"}}'
    )
    assert wait_phase(cluster, "manual", "Sent")["counts"]["sent"] > 0
    assert sorted(jobs(cluster, "manual")) == ["job.batch/manual-process", "job.batch/manual-send"]


def test_suspend_then_cancel(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=manifest("paused", cluster.data, suspend=True))
    wait_phase(cluster, "paused", "Processing")
    job = json.loads(cluster.kubectl("-n", NS, "get", "job", "paused-process", "-o", "json").stdout)
    assert job["spec"]["suspend"] is True
    cluster.kubectl(
        "-n", NS, "patch", "sb", "paused", "--type=merge", "-p", '{"spec":{"cancel":true}}'
    )
    wait_phase(cluster, "paused", "Cancelled")
    deadline = time.monotonic() + 30
    while jobs(cluster, "paused") and time.monotonic() < deadline:
        time.sleep(1)
    assert jobs(cluster, "paused") == []


def test_operator_restart_mid_batch_makes_no_second_job(cluster, tmp_path):
    first = start_operator(cluster, tmp_path)
    cluster.kubectl("apply", "-f", "-", input=manifest("restart", cluster.data))
    deadline = time.monotonic() + 60
    while not jobs(cluster, "restart") and time.monotonic() < deadline:
        time.sleep(0.5)
    first.kill()
    first.wait()
    second = start_operator(cluster, tmp_path)
    try:
        assert wait_phase(cluster, "restart", "Sent")["counts"]["discovered"] == 6
        assert jobs(cluster, "restart") == ["job.batch/restart-process"]
    finally:
        second.terminate()
        second.wait(20)


def test_invalid_manifests_are_rejected_with_clear_messages(cluster):
    bad = cluster.kubectl(
        "apply",
        "-f",
        "-",
        check=False,
        input=manifest("bad", cluster.data, parallelism=0, send="sometimes"),
    )
    assert bad.returncode != 0
    assert "spec.parallelism" in bad.stderr and "spec.send" in bad.stderr
    manual = cluster.kubectl(
        "apply", "-f", "-", check=False, input=manifest("bad", cluster.data, send="manual")
    )
    assert "give\nspec.workspace" in manual.stderr or "spec.workspace" in manual.stderr
    cluster.kubectl("apply", "-f", "-", input=manifest("fixed", cluster.data, suspend=True))
    moved = cluster.kubectl(
        "-n",
        NS,
        "patch",
        "sb",
        "fixed",
        "--type=merge",
        "-p",
        '{"spec":{"source":{"folders":["other"]}}}',
        check=False,
    )
    assert "spec.source cannot change" in moved.stderr


def test_missing_secret_stalls_with_an_event(cluster, operator):
    body = json.loads(manifest("nokey", cluster.data))
    body["spec"]["deidentify"]["pseudonymKey"]["secretKeyRef"]["name"] = "absent"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conds = {
            c["type"]: c for c in (get(cluster, "nokey").get("status") or {}).get("conditions", [])
        }
        if conds.get("Stalled", {}).get("status") == "True":
            break
        time.sleep(1)
    assert conds["Stalled"]["message"] == "Secret absent not found"
    assert jobs(cluster, "nokey") == []


def test_deleting_a_batch_removes_its_jobs(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=manifest("gone", cluster.data, suspend=True))
    wait_phase(cluster, "gone", "Processing")
    cluster.kubectl("-n", NS, "delete", "sb", "gone", "--wait=true")
    deadline = time.monotonic() + 60
    while jobs(cluster, "gone") and time.monotonic() < deadline:
        time.sleep(1)
    assert jobs(cluster, "gone") == []


def test_worker_rbac_is_least_privilege(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=manifest("rbac", cluster.data, suspend=True))
    wait_phase(cluster, "rbac", "Processing")
    who = f"--as=system:serviceaccount:{NS}:rbac-worker"

    def can(*args: str) -> str:
        return cluster.kubectl("auth", "can-i", "-n", NS, who, *args, check=False).stdout.strip()

    assert can("patch", "senditbatches/rbac", "--subresource=status") == "yes"
    assert can("get", "senditbatches/rbac") == "yes"
    assert can("patch", "senditbatches/auto", "--subresource=status") == "no"
    assert can("create", "jobs") == "no"
    assert can("get", "secrets/key") == "no"
    assert can("update", "senditbatches/rbac") == "no"


def test_watch_creates_each_batch_once(cluster, operator, tmp_path):
    data = cluster.data
    (data / "in" / "ST-2.tmp99").mkdir()
    watch = {
        "apiVersion": "sendit.dev/v1alpha1",
        "kind": "SenditWatch",
        "metadata": {"name": "sniff", "namespace": NS},
        "spec": {
            "volume": {"hostPath": {"path": str(data / "in")}},
            "template": {
                "deidentify": {"pseudonymKey": {"secretKeyRef": {"name": "key", "key": "k"}}},
                "destinations": {"local": {"path": str(data / "out" / "watched")}},
                "suspend": True,
            },
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(watch))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if cluster.kubectl("-n", NS, "get", "cronjob", "sniff-scan", check=False).returncode == 0:
            break
        time.sleep(1)
    # Run the scan as its CronJob would, as its own ServiceAccount.
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.token_kubeconfig(NS, "sniff-scan")),
        "SENDIT_PSEUDONYM_KEY": KEY.decode(),
    }
    scan = ["sendit", "watch", "--namespace", NS, "--watch", "sniff", "--source", str(data / "in")]
    for _ in range(2):
        subprocess.run(scan, env=env, check=True, timeout=60)
    out = cluster.kubectl("-n", NS, "get", "sb", "-l", "sendit.dev/watch=sniff", "-o", "name")
    names = out.stdout.split()
    assert len(names) == 1 and "ST-" not in names[0]
    status = json.loads(cluster.kubectl("-n", NS, "get", "sw", "sniff", "-o", "json").stdout)
    assert status["status"]["created"] == 1
