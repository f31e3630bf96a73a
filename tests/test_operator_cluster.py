"""The operator on the real control plane (tests/controlplane): `kubectl apply` a batch, the
operator (a `sendit-operator` subprocess, authenticated as the ServiceAccount of
deploy/rbac/operator.yaml, so its ClusterRole is what is tested) makes the Job, and the fake
node (the harness's node TEST DOUBLE) runs `sendit worker` in the worker image that
scripts/images.sh builds, with the pods' securityContext (user 10001, read-only root, no
capabilities). One operator and one namespace for the module; the restart test kills the
operator with SIGKILL and starts a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pydicom
import pytest
from dicomdata import KEY, PLANTED
from emulators import FakeGcs, Orthanc, environ
from policies import policy_file
from polling import wait_for
from withheld import write_withheld

from sendit_api.names import SHARD_INDEX_ENV
from sendit_worker.cli.sample import make_sample, make_series
from sendit_worker.quarantine.store import Quarantine

pytestmark = pytest.mark.controlplane
ROOT = Path(__file__).resolve().parents[1]
NS = "sendit-test"
OPERATOR_NS, OPERATOR_SA = "sendit-system", "sendit-operator"
FOLDER = "ST-1"  # stands for an identifying folder name: it must never leave the spec
WORKER_IMAGE = os.environ.get("SENDIT_WORKER_IMAGE", "sendit-worker:test")
WORK = {"persistentVolumeClaim": {"claimName": "work"}}  # shared by a batch's pods


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Operator:
    """`sendit-operator` as a subprocess; start, kill -9 and start again."""

    def __init__(self, kubeconfig: Path, log: Path, policy: Path, namespace: str = NS) -> None:
        self.kubeconfig, self.log, self.namespace = kubeconfig, log, namespace
        self.policy = policy  # as the chart's ConfigMap mounts it
        self.proc: subprocess.Popen | None = None
        self.liveness, self.metrics = free_port(), free_port()

    def start(self, *extra: str) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        args = [
            "--namespace",
            self.namespace,
            "--resync-seconds",
            "2",
            "--policy",
            str(self.policy),
        ]
        args += extra
        args += ["--liveness-port", str(self.liveness), "--metrics-port", str(self.metrics)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["sendit-operator", *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(lambda: self.get(self.liveness, "/healthz"), 30, "the operator's /healthz")

    def get(self, port: int, path: str) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def prepare(kube_cluster, namespace: str) -> None:
    """The CRDs, the operator's namespace and identity (deploy/rbac/operator.yaml), and the
    batches' namespace with their key Secret `key` (applied: another module of the session may
    have made the shared ones)."""
    kube_cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
    for ns in (OPERATOR_NS, namespace):
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    kube_cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "rbac" / "operator.yaml"))
    kube_cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", "key", f"--from-literal=k={KEY.decode()}"
    )


@contextlib.contextmanager
def running(cluster, log: Path, policy: Path, namespace: str, *extra: str) -> Iterator[Operator]:
    """An operator for `namespace`, as the ServiceAccount of deploy/rbac, stopped after."""
    op = Operator(cluster.token_kubeconfig(OPERATOR_NS, OPERATOR_SA), log, policy, namespace)
    op.start(*extra)
    try:
        yield op
    finally:
        op.stop()
        print(f"\noperator log: {log}")


@pytest.fixture(scope="module")
def cluster(kube_cluster, fake_node, tmp_path_factory):
    prepare(kube_cluster, NS)
    data = tmp_path_factory.mktemp("data")
    make_sample(data / "in" / FOLDER, patients=2, files=6)
    kube_cluster.data = data
    # One workspace claim for every batch of the module (each has its own folder, by uid).
    kube_cluster.work = fake_node.add_claim(NS, "work", data / "work")
    return kube_cluster


@pytest.fixture(scope="module")
def operator(cluster, tmp_path_factory) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with running(cluster, log, allowing(cluster.data), NS) as op:
        yield op


def allowing(data: Path) -> Path:
    """The cluster's policy for `manifest`'s batches: the test worker image, sources anywhere
    under `data`, local destinations under data/out."""
    path = data.parent / f"{data.name}-policy.json"
    return policy_file(path, images=[WORKER_IMAGE], host_paths=[data], local_paths=[data / "out"])


def manifest(name: str, data: Path, namespace: str = NS, **spec: Any) -> str:
    # The local destination's folder is the administrator's (policy.localPathPrefixes),
    # writable for the workers' user (10001); the workers make the batch's folder below it.
    out = data / "out"
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o777)
    body = {
        "apiVersion": "sendit.dev/v1alpha1",
        "kind": "SenditBatch",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "source": {"volume": {"hostPath": {"path": str(data / "in")}}, "folders": [FOLDER]},
            "deidentify": {"pseudonymKey": {"secretKeyRef": {"name": "key", "key": "k"}}},
            "destinations": {"local": {"path": str(data / "out" / name)}},
            "parallelism": 2,
            "workspace": WORK,
            "image": WORKER_IMAGE,
            **spec,
        },
    }
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    return json.dumps(body)


def apply(cluster, text: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=text)


def get(cluster, name: str) -> dict:
    return json.loads(cluster.kubectl("-n", NS, "get", "sb", name, "-o", "json").stdout)


def wait_phase(cluster, name: str, phase: str, timeout: float = 90) -> dict:
    seen: dict = {}

    def reached() -> dict | None:
        seen.update(get(cluster, name).get("status") or {})
        return seen if seen.get("phase") == phase else None

    try:
        return wait_for(reached, timeout, f"{name} to reach {phase}")
    except AssertionError:
        raise AssertionError(f"{name} never reached {phase}: {seen}") from None


def jobs(cluster, name: str) -> list[str]:
    out = cluster.kubectl("-n", NS, "get", "jobs", "-l", f"sendit.dev/batch={name}", "-o", "name")
    return sorted(out.stdout.split())


def conditions(status: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status.get("conditions", [])}


def test_batch_reaches_sent_with_counts(cluster, operator):
    apply(cluster, manifest("auto", cluster.data))
    status = wait_phase(cluster, "auto", "Sent")
    c = status["counts"]
    assert c["discovered"] == 6 and c["anonymized"] + c["withheld"] + c["failed"] == 6
    assert c["sent"] == c["anonymized"] > 0
    delivered = list((cluster.data / "out" / "auto").rglob("*.dcm"))
    assert len(delivered) == c["sent"] == status["outputs"]["local"]
    assert jobs(cluster, "auto") == ["job.batch/auto-plan", "job.batch/auto-process"]
    assert conditions(status) == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
        "Anonymized": "True",
        "Delivered": "True",
    }
    assert status["observedGeneration"] == 1 and status["completionTime"]
    assert set(status["shards"]) == {"0", "1"}
    assert status["plan"]["headerReads"] == 6 and status["plan"]["shards"] == 2
    table = cluster.kubectl("-n", NS, "get", "sb", "auto").stdout.split("\n")
    header = ["NAME", "PHASE", "PROGRESS", "IMAGES", "ANONYMIZED", "WITHHELD", "FAILED", "SENT"]
    assert table[0].split()[:8] == header
    done = f"{c['sent']}/{c['anonymized']}"
    row = ["auto", "Sent", done, "6", str(c["anonymized"]), "0", "0", str(c["sent"])]
    assert table[1].split()[:8] == row
    assert status["percent"] == 100
    waited = subprocess.run(
        ["sendit", "status", "auto", "-n", NS, "--timeout", "30"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.startswith(f"Sent | {done}")


def test_a_one_pod_batch_plans_itself_without_a_workspace(cluster, operator):
    apply(cluster, manifest("alone", cluster.data, parallelism=1, workspace=None))
    status = wait_phase(cluster, "alone", "Sent")
    assert jobs(cluster, "alone") == ["job.batch/alone-process"] and "plan" not in status
    assert status["shards"]["0"]["headerReads"] == 6 and status["counts"]["sent"] > 0


def worker_pids(batch: str, stage: str) -> list[int]:
    """The processes of a stage's pods, as the host sees them: not their pool processes (forks
    with the same command line), and in container mode not the `docker run` client that the
    fake node holds for each pod (killing it would kill no pod)."""

    def ours(cmd: list[str]) -> bool:
        try:
            client = bool(cmd) and Path(cmd[0]).name == "docker"
            return (
                not client
                and "worker" in cmd
                and [cmd[cmd.index(k) + 1] for k in ("--batch", "--stage")]
                == [
                    batch,
                    stage,
                ]
            )
        except (ValueError, IndexError):
            return False

    pids = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if ours(p.info["cmdline"] or []) and not ours(p.parent().cmdline()):
                pids.append(p.pid)
        except (psutil.Error, AttributeError):
            continue
    return pids


def test_parallelism_3_over_a_skewed_corpus_reads_each_file_once(cluster, fake_node, operator):
    """Three large series and ninety one-image ones on three pods: the plan pod reads every
    header once; each shard gets a third of the images and reads none; a pod killed mid-shard
    is retried on the same plan; every image is delivered exactly once; the totals are exact."""
    skew = "SKEW-1"
    make_series(cluster.data / "skewed" / skew, [150, 120, 90] + [1] * 90)
    body = json.loads(manifest("skew", cluster.data, parallelism=3))
    volume = {"hostPath": {"path": str(cluster.data / "skewed")}}
    body["spec"]["source"] = {"volume": volume, "folders": [skew]}
    apply(cluster, json.dumps(body))

    def processing_shard() -> list[int] | None:
        status = get(cluster, "skew").get("status") or {}
        busy = [s for s in (status.get("shards") or {}).values() if s["stage"] == "processing"]
        mid = [s for s in busy if s.get("discovered") and s.get("anonymized", 0) < s["discovered"]]
        return (mid and worker_pids("skew", "process")) or None

    [victim, *_] = wait_for(processing_shard, 120, "a shard part way through")
    os.kill(victim, signal.SIGKILL)  # (a worker process started for this test, by its pid)
    uid = get(cluster, "skew")["metadata"]["uid"]
    plan = cluster.work / uid / "plan.sqlite"
    planned = plan.stat()
    status = wait_phase(cluster, "skew", "Sent", timeout=300)
    assert (plan.stat().st_ino, plan.stat().st_mtime_ns) == (planned.st_ino, planned.st_mtime_ns)
    assert status["plan"] == {
        "shards": 3,
        "discovered": 450,
        "studies": 5,
        "series": 93,
        "skipped": 0,
        "failed": 0,
        "headerReads": 450,
    }
    shards = status["shards"]
    assert sorted(s["discovered"] for s in shards.values()) == [150, 150, 150]
    assert [s["headerReads"] for s in shards.values()] == [0, 0, 0]
    c = status["counts"]
    assert (c["discovered"], c["anonymized"], c["sent"], c["studies"], c["series"]) == (
        450,
        450,
        450,
        5,
        93,
    )
    delivered = list((cluster.data / "out" / "skew").rglob("*.dcm"))
    assert len(delivered) == 450
    pods = json.loads(
        cluster.kubectl("-n", NS, "get", "pods", "-l", "job-name=skew-process", "-o", "json").stdout
    )["items"]
    assert len(pods) == 4  # three shards, one of them retried
    plan_pods = cluster.kubectl("-n", NS, "get", "pods", "-l", "job-name=skew-plan", "-o", "name")
    assert len(plan_pods.stdout.split()) == 1  # planned once


def last_file_of(plan: Path, shard: int) -> Path:
    """The last file of a shard's last series, as the plan orders them (relative to the source
    volume: the plan holds the pod's paths)."""
    with sqlite3.connect(f"{plan.as_uri()}?mode=ro", uri=True) as db:
        (path,) = db.execute(
            "SELECT f.path FROM series s JOIN files f ON f.study = s.study AND f.series = s.uid"
            " WHERE s.shard = ? ORDER BY s.id DESC, f.sop DESC LIMIT 1",
            (shard,),
        ).fetchone()
    return Path(*Path(os.fsdecode(path)).parts[-4:])  # folder / patient / series / file


def test_a_source_changed_after_planning_is_reported_not_mixed(cluster, operator):
    """Once status.plan is out, one file of each shard's last series changes on the source (one
    rewritten, one removed) before its shard reaches it: each is failed by the shard that owns
    it, reported once, and never delivered; the rest is delivered once; the totals stay the
    plan's."""
    volume = cluster.data / "changing"
    make_series(volume / "CHG-1", [25] * 40)
    body = json.loads(manifest("changed", cluster.data, parallelism=2))
    body["spec"]["source"] = {"volume": {"hostPath": {"path": str(volume)}}, "folders": ["CHG-1"]}
    apply(cluster, json.dumps(body))
    wait_for(lambda: get(cluster, "changed").get("status", {}).get("plan"), 120, "status.plan")
    plan = cluster.work / get(cluster, "changed")["metadata"]["uid"] / "plan.sqlite"
    rewritten, removed = (volume / last_file_of(plan, shard) for shard in (0, 1))
    rewritten.write_bytes(rewritten.read_bytes() + b"\0\0")
    removed.unlink()
    status = wait_phase(cluster, "changed", "Sent", timeout=300)
    c = status["counts"]
    assert (c["discovered"], c["anonymized"], c["failed"], c["sent"]) == (1000, 998, 2, 998)
    assert [s["failed"] for _, s in sorted(status["shards"].items())] == [1, 1]
    assert status["reasons"]["failed"] == {"source-changed": 2}
    assert len(list((cluster.data / "out" / "changed").rglob("*.dcm"))) == 998


def test_manual_send(cluster, fake_node, operator):
    apply(cluster, manifest("manual", cluster.data, send="manual"))
    status = wait_phase(cluster, "manual", "DoneProcessing")
    assert status["counts"]["sent"] == 0 and status["counts"]["anonymized"] > 0
    assert conditions(status)["Ready"] == "True"
    assert not list((cluster.data / "out" / "manual").rglob("*"))  # nothing delivered
    time.sleep(3)  # a resync or two: nothing is sent without the researcher's word
    assert jobs(cluster, "manual") == ["job.batch/manual-plan", "job.batch/manual-process"]
    cluster.kubectl(
        "-n", NS, "patch", "sb", "manual", "--type=merge", "-p", '{"spec":{"send":"auto"}}'
    )
    status = wait_phase(cluster, "manual", "Sent")
    assert status["counts"]["sent"] == status["counts"]["anonymized"]
    assert len(list((cluster.data / "out" / "manual").rglob("*.dcm"))) == status["counts"]["sent"]
    assert jobs(cluster, "manual") == [
        "job.batch/manual-plan",
        "job.batch/manual-process",
        "job.batch/manual-send",
    ]


def test_suspend_resume_then_cancel(cluster, fake_node, operator):
    apply(cluster, manifest("paused", cluster.data, suspend=True))
    wait_phase(cluster, "paused", "Processing")
    job = json.loads(cluster.kubectl("-n", NS, "get", "job", "paused-plan", "-o", "json").stdout)
    assert job["spec"]["suspend"] is True
    time.sleep(2)
    assert not [p for p in fake_node.running_pods() if "paused" in p]  # nothing runs
    assert get(cluster, "paused")["status"]["conditions"][0]["reason"] == "Suspended"
    cluster.kubectl(
        "-n", NS, "patch", "sb", "paused", "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )

    def unsuspended() -> bool:
        out = cluster.kubectl("-n", NS, "get", "job", "paused-plan", "-o", "json").stdout
        return json.loads(out)["spec"]["suspend"] is False

    wait_for(unsuspended, 30, "the Job to be resumed")
    cluster.kubectl(
        "-n", NS, "patch", "sb", "paused", "--type=merge", "-p", '{"spec":{"cancel":true}}'
    )
    status = wait_phase(cluster, "paused", "Cancelled")
    assert conditions(status)["Reconciling"] == "False"
    wait_for(lambda: jobs(cluster, "paused") == [], 30, "the cancelled batch's Jobs to go")
    again = cluster.kubectl(
        "-n",
        NS,
        "patch",
        "sb",
        "paused",
        "--type=merge",
        "-p",
        '{"spec":{"cancel":false}}',
        check=False,
    )
    assert again.returncode != 0 and "a cancelled batch stays cancelled" in again.stderr
    time.sleep(2)
    assert jobs(cluster, "paused") == [] and get(cluster, "paused")["status"]["phase"] == (
        "Cancelled"
    )


def test_operator_restart_mid_batch_makes_no_second_job(cluster, fake_node, operator):
    apply(cluster, manifest("restart", cluster.data))
    wait_for(lambda: "job.batch/restart-process" in jobs(cluster, "restart"), 60, "the Job")
    uid = json.loads(
        cluster.kubectl("-n", NS, "get", "job", "restart-process", "-o", "json").stdout
    )["metadata"]["uid"]
    wait_for(lambda: [p for p in fake_node.running_pods() if "restart" in p], 30, "a worker pod")
    operator.kill()  # mid-batch: its workers keep running and reporting
    time.sleep(1)
    operator.start()
    status = wait_phase(cluster, "restart", "Sent")
    assert status["counts"]["discovered"] == 6 and status["counts"]["sent"] > 0
    assert jobs(cluster, "restart") == ["job.batch/restart-plan", "job.batch/restart-process"]
    job = json.loads(
        cluster.kubectl("-n", NS, "get", "job", "restart-process", "-o", "json").stdout
    )
    assert job["metadata"]["uid"] == uid  # the same Job, never re-made
    events = json.loads(
        cluster.kubectl(
            "-n",
            NS,
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=restart",
            "-o",
            "json",
        ).stdout
    )["items"]
    reasons = [e["reason"] for e in events if e["involvedObject"]["kind"] == "SenditBatch"]
    assert reasons.count("Processing") == 1 and reasons.count("Sent") == 1


def test_a_restarted_operator_counts_the_batches_already_running(cluster, fake_node, operator):
    """Bug: after a restart, admission counted only the batches reconciled so far, so
    --max-running could be exceeded. A suspended batch holds the one slot across the restart."""
    apply(cluster, manifest("slot-a", cluster.data, suspend=True))
    wait_phase(cluster, "slot-a", "Processing")
    operator.kill()
    try:
        operator.start("--max-running", "1")
        apply(cluster, manifest("slot-b", cluster.data))
        time.sleep(5)  # the new operator has reconciled both, and resynced
        waiting = get(cluster, "slot-b").get("status") or {}
        assert jobs(cluster, "slot-b") == [] and waiting.get("phase") == "Queued", waiting
        assert "free slot" in waiting["message"]
        cluster.kubectl(
            "-n", NS, "patch", "sb", "slot-a", "--type=merge", "-p", '{"spec":{"cancel":true}}'
        )
        wait_phase(cluster, "slot-b", "Sent")
    finally:
        operator.stop()
        operator.start()


def test_invalid_manifests_are_rejected_with_clear_messages(cluster):
    bad = cluster.kubectl(
        "apply",
        "-f",
        "-",
        check=False,
        input=manifest("bad", cluster.data, parallelism=0, send="sometimes"),
    )
    assert bad.returncode != 0
    assert "spec.parallelism: Invalid value: 0" in bad.stderr
    assert 'spec.send: Unsupported value: "sometimes"' in bad.stderr
    manual = cluster.kubectl(
        "apply",
        "-f",
        "-",
        check=False,
        input=manifest("bad", cluster.data, send="manual", parallelism=1, workspace=None),
    )
    assert manual.returncode != 0 and "give spec.workspace" in " ".join(manual.stderr.split())
    for workspace in (None, {"emptyDir": {}}):  # a plan shared by the pods needs a shared volume
        shared = cluster.kubectl(
            "apply",
            "-f",
            "-",
            check=False,
            input=manifest("bad", cluster.data, workspace=workspace),
        )
        message = " ".join(shared.stderr.split())
        assert shared.returncode != 0 and "parallelism above 1 shares one plan" in message

    long = cluster.kubectl("apply", "-f", "-", check=False, input=manifest("x" * 51, cluster.data))
    assert long.returncode != 0 and "at most 50 characters" in long.stderr
    escape = json.loads(manifest("bad", cluster.data))
    escape["spec"]["source"]["folders"] = ["../etc"]
    out = cluster.kubectl("apply", "-f", "-", check=False, input=json.dumps(escape))
    assert out.returncode != 0 and "no '..'" in out.stderr
    # Bug: a batch whose only destination was `pacs` (no sink then) reached Sent with nothing
    # sent. A destination kind without a sink is not in the schema, and is refused.
    ftp = json.loads(manifest("ftp-only", cluster.data))
    ftp["spec"]["destinations"] = {"ftp": {"host": "127.0.0.1"}}
    out = cluster.kubectl("apply", "-f", "-", check=False, input=json.dumps(ftp))
    assert out.returncode != 0 and 'unknown field "spec.destinations.ftp"' in out.stderr
    both = json.loads(manifest("pacs-both", cluster.data))
    both["spec"]["destinations"]["pacs"] = {
        "dicomweb": {"url": "http://127.0.0.1:1/dicom-web"},
        "dimse": {"host": "127.0.0.1", "port": 104, "calledAETitle": "PACS"},
    }
    out = cluster.kubectl("apply", "-f", "-", check=False, input=json.dumps(both))
    assert out.returncode != 0 and "exactly one of pacs.dicomweb and pacs.dimse" in out.stderr
    apply(cluster, manifest("fixed", cluster.data, suspend=True))
    for change, message in [
        ('{"spec":{"source":{"folders":["other"]}}}', "spec.source cannot change"),
        ('{"spec":{"parallelism":3}}', "spec.parallelism cannot change"),
    ]:
        moved = cluster.kubectl(
            "-n", NS, "patch", "sb", "fixed", "--type=merge", "-p", change, check=False
        )
        assert moved.returncode != 0 and message in moved.stderr


def test_missing_secret_stalls_with_an_event(cluster, operator):
    body = json.loads(manifest("nokey", cluster.data))
    body["spec"]["deidentify"]["pseudonymKey"]["secretKeyRef"]["name"] = "absent"
    apply(cluster, json.dumps(body))

    def stalled() -> dict | None:
        status = get(cluster, "nokey").get("status") or {}
        return status if conditions(status).get("Stalled") == "True" else None

    status = wait_for(stalled, 30, "Stalled")
    stall = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stall["reason"] == "InvalidReference"
    assert stall["message"] == "Secret absent not found (or the operator may not read it)"
    assert status["phase"] == "Queued" and jobs(cluster, "nokey") == []
    cluster.kubectl(
        "-n", NS, "create", "secret", "generic", "absent", f"--from-literal=k={KEY.decode()}"
    )
    assert wait_phase(cluster, "nokey", "Sent")["counts"]["sent"] > 0  # picked up by a resync


def test_deleting_a_batch_removes_its_jobs_and_rbac(cluster, operator):
    apply(cluster, manifest("gone", cluster.data, suspend=True))
    wait_phase(cluster, "gone", "Processing")
    cluster.kubectl("-n", NS, "get", "job/gone-plan", "sa/gone-worker", "role/gone-worker")
    cluster.kubectl("-n", NS, "delete", "sb", "gone", "--wait=true")

    def all_gone() -> bool:
        left = cluster.kubectl(
            "-n", NS, "get", "jobs,sa,roles,rolebindings", "-o", "name", check=False
        ).stdout
        return "gone-" not in left

    wait_for(all_gone, 30, "the garbage collector to remove the batch's children")


def test_worker_and_operator_rbac_is_least_privilege(cluster, operator):
    apply(cluster, manifest("rbac", cluster.data, suspend=True))
    wait_phase(cluster, "rbac", "Processing")

    def can(who: str, *args: str) -> str:
        as_ = f"--as=system:serviceaccount:{who}"
        out = cluster.kubectl("auth", "can-i", "-n", NS, as_, *args, check=False)
        return out.stdout.strip()

    worker = f"{NS}:rbac-worker"
    assert can(worker, "patch", "senditbatches/rbac", "--subresource=status") == "yes"
    assert can(worker, "get", "senditbatches/rbac") == "yes"
    assert can(worker, "patch", "senditbatches/auto", "--subresource=status") == "no"
    assert can(worker, "update", "senditbatches/rbac") == "no"
    assert can(worker, "list", "senditbatches") == "no"
    assert can(worker, "create", "jobs") == "no"
    assert can(worker, "get", "secrets/key") == "no"
    op = f"{OPERATOR_NS}:{OPERATOR_SA}"
    assert can(op, "create", "jobs") == "yes"
    assert can(op, "create", "services") == "yes"  # a PACS's way to each shard
    assert can(op, "delete", "services") == "no"
    assert can(op, "patch", "senditbatches/rbac", "--subresource=status") == "yes"
    assert can(op, "get", "secrets/key") == "yes"  # to check that references exist
    assert can(op, "list", "secrets") == "no"
    assert can(op, "delete", "senditbatches/rbac") == "no"
    assert can(op, "escalate", "roles") == "no" and can(op, "bind", "roles") == "no"


def test_watch_creates_each_batch_once(cluster, operator):
    data = cluster.data
    (data / "in" / "ST-2.tmp99").mkdir()  # unfinished: waits
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
    apply(cluster, json.dumps(watch))
    wait_for(
        lambda: (
            cluster.kubectl("-n", NS, "get", "cronjob", "sniff-scan", check=False).returncode == 0
        ),
        30,
        "the scan's CronJob",
    )
    # Run the scan as its CronJob would, as its own ServiceAccount.
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.token_kubeconfig(NS, "sniff-scan")),
        "SENDIT_PSEUDONYM_KEY": KEY.decode(),
    }
    scan = ["sendit", "watch", "--namespace", NS, "--watch", "sniff", "--source", str(data / "in")]

    def batches() -> list[str]:
        out = cluster.kubectl("-n", NS, "get", "sb", "-l", "sendit.dev/watch=sniff", "-o", "name")
        return out.stdout.split()

    subprocess.run(scan, env=env, check=True, timeout=60)
    first = batches()
    assert len(first) == 1 and FOLDER not in first[0]
    cluster.kubectl("-n", NS, "delete", *first)  # deleted: still made once
    subprocess.run(scan, env=env, check=True, timeout=60)
    assert batches() == []
    status = json.loads(cluster.kubectl("-n", NS, "get", "sw", "sniff", "-o", "json").stdout)
    assert status["status"]["created"] == 1 and len(status["status"]["seen"]) == 1


def test_withheld_images_wait_in_quarantine_and_a_release_batch_delivers_them(cluster, operator):
    """A batch withholds images and keeps them on its workspace claim; its status says how
    many and where. `sendit review release --apply` makes the release: a ConfigMap (the rule)
    and a SenditBatch whose source is the quarantine on that claim, which the operator runs
    like any other, to Sent with the released image at the destination. Released again, it
    sends nothing."""
    write_withheld(cluster.data / "withheld" / "ST-W")
    body = json.loads(manifest("held", cluster.data, parallelism=1))
    volume = {"hostPath": {"path": str(cluster.data / "withheld")}}
    body["spec"]["source"] = {"volume": volume, "folders": ["ST-W"]}
    apply(cluster, json.dumps(body))
    status = wait_phase(cluster, "held", "Sent", timeout=180)
    uid = get(cluster, "held")["metadata"]["uid"]
    withheld = status["counts"]["withheld"]
    assert status["quarantine"] == {"images": withheld, "folder": f"{uid}/quarantine"} and withheld
    assert f"{withheld} withheld images kept in quarantine" in status["message"]
    q = Quarantine.open(cluster.work / uid / "quarantine")
    ref = next(i.ref for i in q.items() if i.kind == "burned-in-header")
    out = cluster.data / "out" / "held"
    before = set(out.rglob("*.dcm"))
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    release = ["sendit", "review", "release", str(q.root), ref, "--region", "0,0,20,20", "--apply"]
    done = subprocess.run(release, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    status = wait_phase(cluster, "held-release-1", "Sent", timeout=180)
    assert (status["counts"]["anonymized"], status["counts"]["sent"]) == (1, 1)
    [new] = set(out.rglob("*.dcm")) - before
    assert pydicom.dcmread(new).BurnedInAnnotation == "NO"
    again = subprocess.run(release, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing sent again" in again.stderr
    assert "held-release-2" not in cluster.kubectl("-n", NS, "get", "sb", "-o", "name").stdout
    assert set(out.rglob("*.dcm")) == before | {new}


@pytest.mark.emulators
def test_batch_reaches_sent_on_fake_gcs(cluster, operator, fake_gcs):
    """GCS on fake-gcs-server (the real emulator binary): the worker pods inherit
    STORAGE_EMULATOR_HOST from the test process through the fake node."""
    bucket = fake_gcs.bucket("sendit-cluster")
    body = json.loads(manifest("cloud", cluster.data))
    body["spec"]["destinations"] = {"gcs": {"bucket": "sendit-cluster", "prefix": "run"}}
    apply(cluster, json.dumps(body))
    status = wait_phase(cluster, "cloud", "Sent")
    objects = [b.name for b in bucket.list_blobs(prefix="run/")]
    assert status["counts"]["sent"] == status["counts"]["anonymized"] == len(objects) > 0
    assert status["outputs"] == {"gcs": len(objects)}
    assert not any(FOLDER in name for name in objects)


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_batch_reaches_sent_on_orthanc(cluster, operator, orthanc, kind):
    """A PACS destination (a real Orthanc, over DICOMweb; over DIMSE with storage commitment,
    its reports to the one delivering pod): the batch reaches Sent with Orthanc holding every
    image it counts, none twice, no folder name among them."""
    orthanc.clear()
    name = f"to-pacs-{kind}"
    body = json.loads(manifest(name, cluster.data, parallelism=1 if kind == "dimse" else 2))
    commitment = {"mode": "required", "port": orthanc.commitment_port, "bindAddress": "127.0.0.1"}
    pacs = {
        "dicomweb": {"url": orthanc.dicomweb},
        "dimse": {
            "host": "127.0.0.1",
            "port": orthanc.dicom,
            "calledAETitle": orthanc.AE,
            "storageCommitment": commitment,
        },
    }
    body["spec"]["destinations"] = {"pacs": {kind: pacs[kind]}}
    apply(cluster, json.dumps(body))
    status = wait_phase(cluster, name, "Sent")
    held = orthanc.instances()
    assert status["counts"]["sent"] == status["counts"]["anonymized"] == len(held) > 0
    assert status["outputs"] == {"pacs": len(held)}


# -- Chaos: every destination at once while the platform fails -------------------------------

CHAOS_SEED = int(os.environ.get("SENDIT_CHAOS_SEED", "29"))
FAULTS = ("worker pod", "operator", "API server", "Orthanc", "storage server")


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the first worker pod of the process Job runs
    what: str  # one of FAULTS
    down: float  # seconds before it is started again (a killed pod: the Job replaces it)
    shard: int  # the worker pod's shard


def fault_schedule(seed: int, window: float = 20.0) -> list[Fault]:
    """Each fault once, at a moment and for a while drawn from the seed: bounded, repeatable."""
    rng = random.Random(seed)
    faults = [
        Fault(round(rng.uniform(0, window), 1), what, round(rng.uniform(1, 4), 1), rng.randrange(3))
        for what in FAULTS
    ]
    return sorted(faults, key=lambda f: f.at)


def shard_pid(batch: str, shard: int) -> int | None:
    """The running worker process of one shard of the batch's process Job, if any."""
    for pid in worker_pids(batch, "process"):
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).environ().get(SHARD_INDEX_ENV) == str(shard):
                return pid
    return None


def running_worker(batch: str, shard: int, within: float) -> int | None:
    """The shard's worker process, else any of the batch's, waiting a while for one (the Job
    may be backing off after an earlier fault)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pid = shard_pid(batch, shard) or next(iter(worker_pids(batch, "process")), None)
        if pid is not None:
            return pid
        time.sleep(0.2)
    return None


@pytest.mark.emulators
@pytest.mark.timeout(900)
def test_chaos_every_image_once_in_every_destination(
    cluster, fake_node, operator, bigquery_emulator, pubsub_emulator, capsys
):
    """One batch at parallelism 3 to GCS (fake-gcs-server), BigQuery (bqemulator), Pub/Sub
    (Google's emulator) and Orthanc over DIMSE with storage commitment, all at once, while a
    worker pod is killed and the operator, the API server (on the same etcd), Orthanc and the
    storage server are killed and started again, each at a moment drawn from a seed
    ($SENDIT_CHAOS_SEED). The batch ends Sent; every image is held once in GCS and in Orthanc,
    has one BigQuery row, and its series' event ids are stable across retries (a consumer that
    drops duplicate ids sees every image once)."""
    scratch = cluster.data / "chaos"  # the source under the policy's allowed node folder
    scratch.mkdir()
    sizes = [3] * 60
    make_series(scratch / "in" / "CHAOS-1", sizes)
    images = sum(sizes)
    (scratch / "gcs").mkdir()
    (scratch / "orthanc").mkdir()
    gcs = FakeGcs(scratch / "gcs")
    pacs = Orthanc(scratch / "orthanc", titles=3)
    try:
        with environ(STORAGE_EMULATOR_HOST=gcs.url):  # the pods inherit it from the fake node
            gcs.bucket("chaos")
            topic = pubsub_emulator.topic("sendit-test", "chaos")
            body = json.loads(manifest("chaos", cluster.data, parallelism=3, backoffLimit=20))
            body["spec"]["source"] = {
                "volume": {"hostPath": {"path": str(scratch / "in")}},
                "folders": ["CHAOS-1"],
            }
            commitment = {
                "mode": "required",
                "port": pacs.commitment_port,
                "bindAddress": "127.0.0.1",
                "timeoutSeconds": 10,
            }
            body["spec"]["destinations"] = {
                "gcs": {"bucket": "chaos", "prefix": "chaos"},
                "bigquery": {
                    "project": "sendit-test",
                    "dataset": "chaos",
                    "table": "images",
                    "endpoint": bigquery_emulator.url,
                },
                "pubsub": {"topic": topic},
                "pacs": {
                    "dimse": {
                        "host": "127.0.0.1",
                        "port": pacs.dicom,
                        "calledAETitle": pacs.AE,
                        "storageCommitment": commitment,
                    }
                },
            }
            schedule = fault_schedule(CHAOS_SEED)
            began = time.monotonic()
            apply(cluster, json.dumps(body))
            wait_for(lambda: worker_pids("chaos", "process"), 120, "a worker pod of the batch")
            start = time.monotonic()
            done: list[str] = []
            for fault in schedule:
                time.sleep(max(0.0, start + fault.at - time.monotonic()))
                at = time.monotonic() - start
                if fault.what == "worker pod":
                    pid = running_worker("chaos", fault.shard, within=60)
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)  # a worker started for this test
                    at = time.monotonic() - start
                    outcome = f"killed (pid {pid})" if pid else "none ran within 60s"
                elif fault.what == "operator":
                    operator.kill()
                    time.sleep(fault.down)
                    operator.start()
                    outcome = "killed, started again"
                elif fault.what == "API server":
                    cluster.restart_apiserver(fault.down)
                    outcome = "killed, started again on the same etcd"
                else:
                    server = pacs if fault.what == "Orthanc" else gcs
                    server.stop()
                    time.sleep(fault.down)
                    server.start()
                    outcome = "killed, started again"
                down = (
                    f"down {fault.down:.1f}s"
                    if fault.what != "worker pod"
                    else f"shard {fault.shard}"
                )
                done.append(f"  {at:5.1f}s  {fault.what:<14} {down:<9}  {outcome}")
            status = wait_phase(cluster, "chaos", "Sent", timeout=600)
            took = time.monotonic() - began
            blobs = [b.name for b in gcs.client().bucket("chaos").list_blobs(prefix="chaos/")]
        held = pacs.instance_ids()
        rows = bigquery_emulator.rows("sendit-test", "chaos", "images")
        messages = pubsub_emulator.pull("sendit-test", "chaos")
    finally:
        gcs.stop()
        pacs.stop()
    events = [json.loads(m.data) for m in messages if m.attributes["type"] == "series.delivered"]
    unique = {e["id"]: e for e in events}
    pods = cluster.kubectl("-n", NS, "get", "pods", "-l", "job-name=chaos-process", "-o", "name")
    services = json.loads(
        cluster.kubectl("-n", NS, "get", "svc", "-l", "sendit.dev/batch=chaos", "-o", "json").stdout
    )["items"]
    with capsys.disabled():
        print(
            f"\nchaos seed {CHAOS_SEED} (SENDIT_CHAOS_SEED): faults, in seconds after the first"
            " worker pod ran"
        )
        print("\n".join(done))
        print(
            f"chaos: Sent in {took:.0f}s with {len(pods.stdout.split())} process pods for 3 shards;"
            f" {images} images: GCS {len(blobs)} objects, Orthanc {len(held)} instances,"
            f" BigQuery {len(rows)} rows, Pub/Sub {len(events)} series.delivered events"
            f" ({len(unique)} ids, {sum(e['images'] for e in unique.values())} images)"
        )
    c = status["counts"]
    assert (c["discovered"], c["anonymized"], c["sent"]) == (images, images, images), c
    assert len(blobs) == len(set(blobs)) == images
    assert len(held) == images, "Orthanc holds an image twice, or misses one"
    sops = Counter(r["sop_uid"] for r in rows)
    assert len(sops) == images and set(sops.values()) == {1}, "a BigQuery row twice"
    assert {name.rsplit("/", 1)[1].removesuffix(".dcm") for name in blobs} == set(sops)
    assert len(unique) == len(sizes), "a series without its event, or one with two ids"
    assert all(e == unique[e["id"]] | {"time": e["time"]} for e in events), "an id reused"
    assert sum(e["images"] for e in unique.values()) == images
    # Where a PACS in a cluster sends each shard's reports: a Service per shard, on its port.
    assert {
        (v["metadata"]["name"], v["spec"]["ports"][0]["port"]): v["spec"]["selector"][
            "batch.kubernetes.io/job-completion-index"
        ]
        for v in services
    } == {(f"chaos-commit-{i}", pacs.commitment_port + i): str(i) for i in range(3)}


def test_liveness_and_metrics(cluster, operator):
    assert operator.get(operator.liveness, "/healthz") is not None
    text = wait_for(
        lambda: (t := operator.get(operator.metrics, "/metrics")) and "sendit_batches" in t and t,
        10,
        "/metrics",
    )
    assert 'sendit_batches{phase="Sent"}' in text
    assert "sendit_images_total" in text and "sendit_batch_duration_seconds" in text


def test_nothing_identifying_in_status_events_logs_or_metrics(cluster, fake_node, operator):
    """Runs last: everything the module's batches left behind, searched for identifying values
    (the DICOM headers' planted values, and the source folder's name and path)."""
    forbidden = [*PLANTED.values(), FOLDER, str(cluster.data)]
    statuses = [
        b.get("status")
        for b in json.loads(cluster.kubectl("-n", NS, "get", "sb", "-o", "json").stdout)["items"]
    ]
    assert len(statuses) >= 5 and all(statuses)
    events = json.loads(cluster.kubectl("-n", NS, "get", "events", "-o", "json").stdout)["items"]
    ours = [e for e in events if e["involvedObject"]["kind"] == "SenditBatch"]
    assert {e["reason"] for e in ours} >= {"Processing", "Sent", "DoneProcessing", "Cancelled"}
    pods = json.loads(cluster.kubectl("-n", NS, "get", "pods", "-o", "json").stdout)["items"]
    # The fake node's own lines ("[fake node] run [...]") show the local directories it maps
    # the mounts to: the test double's, not the worker's (whose args say /sendit/source).
    worker_logs = [
        line
        for p in pods
        for line in fake_node.logs(NS, p["metadata"]["name"]).splitlines()
        if not line.startswith("[fake node]")
    ]
    assert worker_logs
    texts = {
        "status": json.dumps(statuses),
        "events": json.dumps([(e["reason"], e["message"]) for e in ours]),
        "operator log": operator.log.read_text(errors="replace"),
        "worker logs": "\n".join(worker_logs),
        "metrics": operator.get(operator.metrics, "/metrics") or "",
    }
    for where, text in texts.items():
        leaks = [v for v in forbidden if v in text]
        assert not leaks, f"{where} carries identifying values: {leaks}"
