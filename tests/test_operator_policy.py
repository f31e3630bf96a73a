"""Who may run what: a SenditBatch (or SenditWatch) may name only what the cluster's policy
allows, so its author gets no more than creating pods would give.

Without a cluster: the operator's own check (sendit_operator.policy), case by case, and the
policy file it reads. On the real control plane (`controlplane`), the same cases twice: the
chart's ValidatingAdmissionPolicy (rendered by the Go-built helm from the same values as the
operator's policy file) refuses each at `kubectl create` by a user who may only create batches
and watches, with the field and the reason; with the admission policy removed, the operator
(a `sendit-operator` subprocess as the ServiceAccount of deploy/rbac/operator.yaml) refuses the
same batches, which go Failed with the same message, and creates no Job; an allowed batch runs
to Sent as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from batches import batch
from polling import wait_for
from test_chart import render
from test_operator_cluster import Operator, prepare, running

from sendit_operator.policy import (
    ACCOUNT,
    HOST_PATH,
    HOST_PATH_TYPE,
    IMAGE,
    LOCAL_PATH,
    READ_ONLY,
    VOLUME_KIND,
    WORKSPACE,
    Policy,
    PolicyFile,
    refusal,
    watch_refusal,
)

WORKER_IMAGE = os.environ.get("SENDIT_WORKER_IMAGE", "sendit-worker:test")
MORE_IMAGES = ["registry.example/sendit/*"]  # policy.images: every image under that path


def values(root: str) -> dict[str, Any]:
    """The chart's values for both layers: the test worker image, the chart's worker
    ServiceAccount, sources under root/in, local destinations under root/out."""
    repository, tag = WORKER_IMAGE.rsplit(":", 1)
    return {
        "workerImage": {"repository": repository, "tag": tag},
        "policy": {
            "images": MORE_IMAGES,
            "hostPathPrefixes": [f"{root}/in"],
            "localPathPrefixes": [f"{root}/out"],
        },
    }


def allowed(root: str, name: str) -> dict[str, Any]:
    """A batch the policy allows (the forbidden cases each change one field of it)."""
    return {
        "source": {"volume": {"hostPath": {"path": f"{root}/in"}}, "folders": ["ST-1"]},
        "deidentify": {"pseudonymKey": {"secretKeyRef": {"name": "key", "key": "k"}}},
        "destinations": {"local": {"path": f"{root}/out/{name}"}},
    }


def forbidden(root: str) -> dict[str, tuple[dict[str, Any], str]]:
    """Case: (what changes in `allowed`, the refusal: the field, then why). Node paths stay
    under `root`: the fake node runs pods as local processes."""

    def source(volume: dict) -> dict:
        return {"source": {"volume": volume, "folders": ["ST-1"]}}

    def host(path: str, **more: str) -> dict:
        return source({"hostPath": {"path": path, **more}})

    return {
        "another image": ({"image": "registry.example/miner:1"}, f"spec.image: {IMAGE}"),
        "an image beside the allowed path": (
            {"image": "registry.example/sendit-evil:1"},
            f"spec.image: {IMAGE}",
        ),
        "the operator's ServiceAccount": (
            {"serviceAccountName": "sendit-operator"},
            f"spec.serviceAccountName: {ACCOUNT}",
        ),
        "a Secret as the source": (
            source({"secret": {"secretName": "key"}}),
            f"spec.source.volume: {VOLUME_KIND}",
        ),
        "the node's root": (host("/"), f"spec.source.volume.hostPath.path: {HOST_PATH}"),
        "a node folder beside the allowed one": (
            host(f"{root}/input"),
            f"spec.source.volume.hostPath.path: {HOST_PATH}",
        ),
        "a node folder climbing out": (
            host(f"{root}/in/../elsewhere"),
            f"spec.source.volume.hostPath.path: {HOST_PATH}",
        ),
        "a node folder made if missing": (
            host(f"{root}/in", type="DirectoryOrCreate"),
            f"spec.source.volume.hostPath.type: {HOST_PATH_TYPE}",
        ),
        "a node folder deleted after": (
            {"cleanup": {"source": "delete"}},
            f"spec.cleanup.source: {READ_ONLY}",
        ),
        "a workspace on the node": (
            {"workspace": {"hostPath": {"path": f"{root}/in"}}},
            f"spec.workspace: {WORKSPACE}",
        ),
        "a local destination elsewhere": (
            {"destinations": {"local": {"path": f"{root}/elsewhere"}}},
            f"spec.destinations.local.path: {LOCAL_PATH}",
        ),
        "a local destination climbing out": (
            {"destinations": {"local": {"path": f"{root}/out/../elsewhere"}}},
            f"spec.destinations.local.path: {LOCAL_PATH}",
        ),
    }


def watch(root: str, **spec: Any) -> dict[str, Any]:
    template = {"deidentify": {"pseudonymKey": {"secretKeyRef": {"name": "key", "key": "k"}}}}
    return {"volume": {"hostPath": {"path": f"{root}/in"}}, "template": template, **spec}


def forbidden_watches(root: str) -> dict[str, tuple[dict[str, Any], str]]:
    return {
        "a scan in another image": (watch(root, image="miner:1"), f"spec.image: {IMAGE}"),
        "a scan of the node's /etc": (
            watch(root, volume={"hostPath": {"path": "/etc"}}),
            f"spec.volume.hostPath.path: {HOST_PATH}",
        ),
    }


# ------------------------------------------------------------------- without a cluster


def chart_policy(root: str) -> Policy:
    """What the chart renders from `values` (test_chart checks the rendering itself)."""
    v = values(root)["policy"]
    return Policy(
        (WORKER_IMAGE, *MORE_IMAGES),
        ("sendit-worker",),
        ("persistentVolumeClaim", "nfs", "csi"),
        tuple(v["hostPathPrefixes"]),
        tuple(v["localPathPrefixes"]),
    )


POLICY = chart_policy("/data")
CASES = forbidden("/data")


@pytest.mark.parametrize("case", CASES)
def test_the_operator_refuses_each_forbidden_field_saying_which_and_why(case):
    change, message = CASES[case]
    spec = {**allowed("/data", "b"), **change}
    assert refusal(POLICY, batch(**spec).spec) == message


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"image": WORKER_IMAGE},
        {"image": "registry.example/sendit/worker:2"},
        {"serviceAccountName": "sendit-worker"},
        {"source": {"volume": {"nfs": {"server": "nas", "path": "/x"}}, "folders": ["a"]}},
        {"source": {"volume": {"csi": {"driver": "d"}}, "folders": ["a"]}},
        {
            "source": {
                "volume": {"hostPath": {"path": "/data/in/x", "type": "Directory"}},
                "folders": ["a"],
            }
        },
        {"workspace": {"emptyDir": {}}},
        {"workspace": {"persistentVolumeClaim": {"claimName": "w"}}, "parallelism": 4},
        {"destinations": {"local": {"path": "/data/out"}}},
        {"destinations": {"gcs": {"bucket": "research"}}},
    ],
    ids=lambda change: json.dumps(change)[:60],
)
def test_what_the_policy_allows(change):
    assert refusal(POLICY, batch(**{**allowed("/data", "b"), **change}).spec) is None


def test_a_claim_may_be_deleted_after_delivery_a_node_folder_never():
    claim = {"volume": {"persistentVolumeClaim": {"claimName": "src"}}, "folders": ["a"]}
    spec = {**allowed("/data", "b"), "source": claim, "cleanup": {"source": "delete"}}
    assert refusal(POLICY, batch(**spec).spec) is None


def test_without_a_policy_the_operator_allows_its_own_image_and_restricted_volumes_only():
    strict = Policy.strict("sendit-worker:1")
    claim = {"source": {"volume": {"persistentVolumeClaim": {"claimName": "c"}}, "folders": ["a"]}}
    assert refusal(strict, batch(**claim).spec) is None
    assert refusal(strict, batch(image="sendit-worker:1", **claim).spec) is None
    refused = {
        "spec.image": {"image": "sendit-worker:2", **claim},
        "spec.serviceAccountName": {"serviceAccountName": "sendit-worker", **claim},
        "spec.source.volume": allowed("/data", "b"),
        "spec.destinations.local.path": {"destinations": {"local": {"path": "/o"}}, **claim},
    }
    for field, spec in refused.items():
        assert (refusal(strict, batch(**spec).spec) or "").startswith(f"{field}: "), field
    nfs = {"source": {"volume": {"nfs": {"server": "n", "path": "/"}}, "folders": ["a"]}}
    assert refusal(strict, batch(**nfs).spec) == f"spec.source.volume: {VOLUME_KIND}"


@pytest.mark.parametrize("case", forbidden_watches("/data"))
def test_a_watch_is_held_to_the_same_image_and_volume_rules(case):
    spec, message = forbidden_watches("/data")[case]
    assert watch_refusal(POLICY, spec) == message
    assert watch_refusal(POLICY, watch("/data")) is None


def test_the_policy_file_is_read_again_when_the_kubelet_replaces_it(tmp_path):
    """The ConfigMap mounted: the kubelet writes a new file and swaps a symlink to it."""

    def publish(name: str, **changes: Any) -> None:
        data = {
            "images": ["a:1"],
            "serviceAccounts": [],
            "sourceVolumes": ["persistentVolumeClaim"],
            "hostPathPrefixes": [],
            "localPathPrefixes": [],
            **changes,
        }
        (tmp_path / name).write_text(json.dumps(data))
        (tmp_path / "link").symlink_to(tmp_path / name)
        os.replace(tmp_path / "link", tmp_path / "policy.json")

    publish("v1")
    read = PolicyFile(tmp_path / "policy.json")
    assert read().images == ("a:1",) and read() is read()  # unchanged: not parsed again
    publish("v2", images=["a:2"], hostPathPrefixes=["/srv"])
    assert read().images == ("a:2",) and read().host_path_prefixes == ("/srv",)
    (tmp_path / "broken").write_text(json.dumps({"images": []}))
    os.replace(tmp_path / "broken", tmp_path / "v2")
    with pytest.raises(KeyError):  # a list missing fails closed: nothing is created
        read()


# ---------------------------------------------------------------- on the control plane

NS = "sendit-policy"
AUTHOR = "author@hospital.example"  # may create batches and watches in NS, nothing else


def as_author(cluster, *args: str, input: str | None = None):
    return cluster.kubectl(*args, f"--as={AUTHOR}", check=False, input=input)


def listed(docs: list[dict]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def events(cluster, selector: str) -> list[dict]:
    got = cluster.kubectl("-n", NS, "get", "events", "--field-selector", selector, "-o", "json")
    return json.loads(got.stdout)["items"]


def body(kind: str, name: str, spec: dict) -> str:
    meta = {"name": name, "namespace": NS}
    return json.dumps(
        {"apiVersion": "sendit.dev/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}
    )


def batches(root: str) -> dict[str, str]:
    """Each forbidden case as a batch manifest, by its expected refusal's case name."""
    return {
        case: body("SenditBatch", f"forbidden-{i}", {**allowed(root, f"f{i}"), **change})
        for i, (case, (change, _)) in enumerate(forbidden(root).items())
    }


@pytest.fixture(scope="module")
def cluster(kube_cluster, fake_node, helm, tmp_path_factory):
    from sendit_worker.cli.sample import make_sample

    prepare(kube_cluster, NS)
    data = tmp_path_factory.mktemp("policy-data")
    make_sample(data / "in" / "ST-1", patients=1, files=3)
    (data / "out").mkdir()
    (data / "out").chmod(0o777)  # the administrator's folder, writable by the workers' user
    # The author's RBAC: create batches and watches, nothing else (no pods, no Jobs).
    kinds = "--resource=senditbatches.sendit.dev,senditwatches.sendit.dev"
    kube_cluster.kubectl("-n", NS, "create", "role", "author", "--verb=create", kinds)
    kube_cluster.kubectl(
        "-n", NS, "create", "rolebinding", "author", "--role=author", f"--user={AUTHOR}"
    )
    # Both layers from one set of values: the chart's admission policy (its binding to NS,
    # the namespace this release's operator watches) and the ConfigMap's policy file.
    docs = render(helm, {**values(str(data)), "operator": {"watchNamespaces": [NS]}})
    admission = [d for d in docs if d["kind"].startswith("ValidatingAdmissionPolicy")]
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and "policy.json" in d["data"]]
    (data / "policy.json").write_text(config["data"]["policy.json"])
    kube_cluster.kubectl("apply", "-f", "-", input=listed(admission))
    kube_cluster.data, kube_cluster.admission = data, admission
    return kube_cluster


@pytest.fixture(scope="module")
def operator(cluster, tmp_path_factory) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("policy-operator") / "operator.log"
    with running(cluster, log, cluster.data / "policy.json", NS) as op:
        yield op


def wait_phase(cluster, name: str, phase: str, timeout: float = 120) -> dict:
    def reached() -> dict | None:
        got = json.loads(cluster.kubectl("-n", NS, "get", "sb", name, "-o", "json").stdout)
        status = got.get("status") or {}
        return status if status.get("phase") == phase else None

    return wait_for(reached, timeout, f"{name} to reach {phase}")


def refused_at_admission(cluster, manifest: str) -> str | None:
    """The API server's refusal of a dry-run create by the author; None when admitted."""
    proc = as_author(cluster, "create", "--dry-run=server", "-f", "-", input=manifest)
    return None if proc.returncode == 0 else proc.stderr


@pytest.mark.controlplane
def test_an_author_is_refused_at_admission_for_each_forbidden_field(cluster):
    for verb, resource in [("create", "pods"), ("create", "jobs"), ("get", "secrets")]:
        proc = as_author(cluster, "auth", "can-i", verb, resource, "-n", NS)
        assert proc.stdout.strip() == "no", (verb, resource)
    root = str(cluster.data)
    first = next(iter(batches(root).values()))
    wait_for(lambda: refused_at_admission(cluster, first), 30, "the admission policy in force")
    cases = forbidden(root)
    for case, manifest in batches(root).items():
        proc = as_author(cluster, "create", "-f", "-", input=manifest)
        assert proc.returncode != 0, f"{case} was admitted"
        assert f"denied request: {cases[case][1]}" in proc.stderr, (case, proc.stderr)
    for i, (case, (spec, message)) in enumerate(forbidden_watches(root).items()):
        proc = as_author(cluster, "create", "-f", "-", input=body("SenditWatch", f"w{i}", spec))
        assert f"denied request: {message}" in proc.stderr, (case, proc.stderr)
    listed = cluster.kubectl("-n", NS, "get", "sb,sw", "-o", "name").stdout
    assert listed.strip() == ""


@pytest.mark.controlplane
def test_an_allowed_batch_runs_to_sent_as_before(cluster, operator):
    root = cluster.data
    manifest = body(
        "SenditBatch", "allowed", {**allowed(str(root), "allowed"), "image": WORKER_IMAGE}
    )
    proc = as_author(cluster, "create", "-f", "-", input=manifest)
    assert proc.returncode == 0, proc.stderr
    status = wait_phase(cluster, "allowed", "Sent")
    assert status["counts"]["sent"] == status["counts"]["anonymized"] > 0
    assert len(list((root / "out" / "allowed").rglob("*.dcm"))) == status["counts"]["sent"]
    job = json.loads(
        cluster.kubectl("-n", NS, "get", "job", "allowed-process", "-o", "json").stdout
    )
    pod = job["spec"]["template"]["spec"]
    (local,) = (v["hostPath"] for v in pod["volumes"] if v["name"] == "local")
    assert local == {"path": str(root / "out"), "type": "Directory"}


@pytest.mark.controlplane
def test_without_the_admission_policy_the_operator_refuses_the_same_batches(cluster, operator):
    """The second layer: nothing is created for a refused batch (no Job, no RBAC), which goes
    Failed with the same message and a Warning Event; a refused watch gets no scan."""
    root = str(cluster.data)
    cluster.kubectl("delete", "-f", "-", input=listed(cluster.admission))
    first = next(iter(batches(root).values()))
    wait_for(lambda: refused_at_admission(cluster, first) is None, 30, "admission without policy")
    cases = forbidden(root)
    for manifest in batches(root).values():
        proc = as_author(cluster, "create", "-f", "-", input=manifest)
        assert proc.returncode == 0, proc.stderr
    for i, case in enumerate(cases):
        status = wait_phase(cluster, f"forbidden-{i}", "Failed")
        assert status["message"] == cases[case][1], case
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Stalled"]["status"] == "True"
        assert conditions["Stalled"]["reason"] == "PolicyRefused"
    for kind in ("jobs", "serviceaccounts", "roles"):
        names = cluster.kubectl("-n", NS, "get", kind, "-o", "name").stdout.split()
        assert not [n for n in names if "forbidden-" in n], (kind, names)
    failed = events(cluster, "reason=Failed,type=Warning")
    assert {e["involvedObject"]["name"] for e in failed} >= {
        f"forbidden-{i}" for i in range(len(cases))
    }
    for i, (spec, message) in enumerate(forbidden_watches(root).values()):
        proc = as_author(cluster, "create", "-f", "-", input=body("SenditWatch", f"w{i}", spec))
        assert proc.returncode == 0, proc.stderr
        selector = f"involvedObject.name=w{i},reason=PolicyRefused,type=Warning"
        (event, *_) = wait_for(lambda s=selector: events(cluster, s), 30, f"w{i} refused")
        assert event["message"] == message
        assert cluster.kubectl("-n", NS, "get", "cronjob", f"w{i}-scan", check=False).returncode
