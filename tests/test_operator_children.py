"""Rendering a batch's children: the stage Jobs, the workers' RBAC, the SenditWatch CronJob;
and what the operator checks before it starts a batch."""

from __future__ import annotations

import dataclasses

from sendit_api.spec import parse_batch
from sendit_operator.children import render_commit_services, render_job, render_worker_rbac
from sendit_operator.policy import Policy
from sendit_operator.validate import problem
from sendit_operator.watches import render_children


def batch(**spec) -> tuple[dict, object]:
    """The batch's body (the owner) and its typed form."""
    manifest = {
        "apiVersion": "sendit.dev/v1alpha1",
        "kind": "SenditBatch",
        "metadata": {"name": "b1", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {
            "source": {
                "volume": {"persistentVolumeClaim": {"claimName": "exports"}},
                "folders": ["a"],
            },
            "deidentify": {
                "pseudonymKey": {"secretKeyRef": {"name": "key", "key": "k"}},
                "recipe": {"configMapKeyRef": {"name": "recipes", "key": "r.txt"}},
            },
            "destinations": {"local": {"path": "/out"}},
            "parallelism": 3,
            **spec,
        },
    }
    return manifest, parse_batch(manifest)


KEY = {"secretKeyRef": {"name": "key", "key": "k"}}
POLICY = Policy(("img",), (), ("persistentVolumeClaim",), (), ("/out",))  # allows batch()


def test_the_plan_job_is_one_pod_reading_the_source_with_neither_key_nor_config():
    work = {"persistentVolumeClaim": {"claimName": "work"}}
    job = render_job(*batch(workspace=work), "plan", "img", POLICY)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert job["metadata"]["name"] == "b1-plan"
    assert (spec["completions"], spec["parallelism"]) == (1, 1)
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"source", "work", "tmp"} and mounts["source"]["readOnly"] is True
    assert next(v for v in pod["volumes"] if v["name"] == "work")["persistentVolumeClaim"] == {
        "claimName": "work"
    }
    assert [e["name"] for e in container["env"]] == ["TMPDIR", "HOME"]  # no key, no token
    args = container["args"]
    assert args[args.index("--stage") + 1] == "plan" and args[args.index("--shards") + 1] == "1"
    assert "--send" not in args


def test_the_process_job_has_one_pod_per_shard_of_the_plan():
    spec = render_job(*batch(), "process", "img", POLICY, shards=2)["spec"]
    assert (spec["completions"], spec["parallelism"]) == (2, 2)  # parallelism 3, two series


def test_process_job_is_indexed_owned_read_only_and_fails_fast_on_config_errors():
    job = render_job(*batch(ttlSecondsAfterFinished=60), "process", "img:1", POLICY, shards=3)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert job["metadata"]["name"] == "b1-process"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert spec["backoffLimit"] == 3 and spec["ttlSecondsAfterFinished"] == 60
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [2]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "b1-worker"
    (container,) = pod["containers"]
    assert container["image"] == "img:1"
    source = next(m for m in container["volumeMounts"] if m["name"] == "source")
    assert source["readOnly"] is True
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "exports", "readOnly": True}
    key = next(e for e in container["env"] if e["name"] == "SENDIT_PSEUDONYM_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": "key", "key": "k"}
    args = container["args"]
    assert args[:5] == ["worker", "--namespace", "ns", "--batch", "b1"]
    assert "--send" in args and "--local" in args
    config = next(v for v in pod["volumes"] if v["name"] == "config")
    assert config["projected"]["sources"][0]["configMap"]["items"] == [
        {"key": "r.txt", "path": "recipes/r.txt"}
    ]


def test_a_local_destination_mounts_the_allowed_folder_and_the_workers_make_theirs_below():
    """Never a hostPath the kubelet makes (root's, 0755, where workers cannot write): the
    deepest allowed folder that holds the path (it must exist), and the path below it, which
    the workers make as their own."""
    policy = dataclasses.replace(POLICY, local_path_prefixes=("/srv", "/srv/sendit"))

    def local(path: str) -> tuple[dict, str]:
        owner, b = batch(destinations={"local": {"path": path}})
        pod = render_job(owner, b, "process", "img", policy)["spec"]["template"]["spec"]
        (volume,) = (v["hostPath"] for v in pod["volumes"] if v["name"] == "local")
        args = pod["containers"][0]["args"]
        return volume, args[args.index("--local") + 1]

    assert local("/srv/sendit/team/b1") == (
        {"path": "/srv/sendit", "type": "Directory"},
        "/sendit/local/team/b1",
    )
    assert local("/srv/sendit") == ({"path": "/srv/sendit", "type": "Directory"}, "/sendit/local")
    assert local("/srv/other/") == ({"path": "/srv", "type": "Directory"}, "/sendit/local/other")


def test_worker_pods_meet_the_restricted_pod_security_standard():
    pod = render_job(*batch(), "process", "img", POLICY)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    scratch = next(m for m in container["volumeMounts"] if m["name"] == "tmp")["mountPath"]
    assert {"name": "TMPDIR", "value": scratch} in container["env"]


def test_manual_process_job_does_not_send_and_send_job_has_no_key():
    manual = batch(send="manual", workspace={"persistentVolumeClaim": {"claimName": "w"}})
    process = render_job(*manual, "process", "img", POLICY)
    assert "--send" not in process["spec"]["template"]["spec"]["containers"][0]["args"]
    assert process["metadata"]["annotations"]["sendit.dev/sends"] == "false"
    send = render_job(*manual, "send", "img", POLICY)
    container = send["spec"]["template"]["spec"]["containers"][0]
    assert [e["name"] for e in container["env"]] == ["TMPDIR", "HOME"]  # no key, no token
    assert "--stage" in container["args"]
    assert send["metadata"]["name"] == "b1-send"
    assert {"name": "work", "persistentVolumeClaim": {"claimName": "w"}} in (
        send["spec"]["template"]["spec"]["volumes"]
    )


def test_worker_rbac_is_this_batch_only():
    sa, role, binding = render_worker_rbac(*batch())
    assert sa["kind"] == "ServiceAccount" and sa["metadata"]["name"] == "b1-worker"
    assert all(rule["resourceNames"] == ["b1"] for rule in role["rules"])
    verbs = {r["resources"][0]: r["verbs"] for r in role["rules"]}
    assert verbs == {"senditbatches": ["get"], "senditbatches/status": ["get", "patch"]}
    assert binding["subjects"][0]["name"] == "b1-worker"
    _role, binding2 = render_worker_rbac(*batch(serviceAccountName="gcs-writer"))
    assert binding2["subjects"][0]["name"] == "gcs-writer"


def test_validation_names_what_is_missing():
    spec = batch()[1].spec
    assert problem(spec, lambda kind, name: True) is None
    missing = problem(spec, lambda kind, name: kind != "ConfigMap")
    assert missing == "ConfigMap recipes not found (or the operator may not read it)"
    no_volume = dataclasses.replace(spec.source, volume=None)
    assert "volume" in problem(dataclasses.replace(spec, source=no_volume), lambda k, n: True)
    local_recipe = batch(deidentify={"pseudonymKey": KEY, "recipe": {"file": "r.txt"}})[1].spec
    assert "configMapKeyRef" in problem(local_recipe, lambda k, n: True)


def test_watch_children_scan_read_only_and_may_only_create_batches():
    watch = {
        "apiVersion": "sendit.dev/v1alpha1",
        "kind": "SenditWatch",
        "metadata": {"name": "w", "namespace": "ns", "uid": "u-w"},
        "spec": {
            "volume": {"hostPath": {"path": "/data"}},
            "schedule": "*/5 * * * *",
            "template": {
                "deidentify": {"pseudonymKey": {"secretKeyRef": {"name": "k", "key": "k"}}}
            },
        },
    }
    _sa, role, _binding, cron = render_children(watch, "img")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["volumeMounts"][0]["readOnly"] is True
    creates = [r for r in role["rules"] if "create" in r["verbs"]]
    assert creates == [
        {"apiGroups": ["sendit.dev"], "resources": ["senditbatches"], "verbs": ["create"]}
    ]
    assert all(c["metadata"]["ownerReferences"][0]["uid"] == "u-w" for c in (_sa, role, cron))
    assert pod["securityContext"]["runAsNonRoot"] is True  # a restricted namespace admits it
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_cleanup_job_is_one_pod_with_the_source_writable():
    job = render_job(*batch(cleanup={"source": "delete"}), "cleanup", "img", POLICY)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert job["metadata"]["name"] == "b1-cleanup"
    assert (spec["completions"], spec["parallelism"]) == (1, 1)
    (container,) = pod["containers"]
    source = next(m for m in container["volumeMounts"] if m["name"] == "source")
    assert source["readOnly"] is False
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "exports", "readOnly": False}
    args = container["args"]
    assert args[args.index("--stage") + 1] == "cleanup" and "--send" not in args
    assert job["metadata"]["annotations"]["sendit.dev/sends"] == "false"


def test_pacs_credentials_reach_the_delivering_pod_from_their_secret():
    owner, b = batch(
        destinations={
            "pacs": {
                "dicomweb": {"url": "https://pacs"},
                "credentialsSecretRef": {"name": "pacs-login"},
            }
        }
    )
    (container,) = render_job(owner, b, "process", "img", POLICY)["spec"]["template"]["spec"][
        "containers"
    ]
    creds = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "PACS" in e["name"] and "valueFrom" in e
    }
    assert creds["SENDIT_PACS_PASSWORD"] == {
        "name": "pacs-login",
        "key": "password",
        "optional": True,
    }
    assert set(creds) == {"SENDIT_PACS_USERNAME", "SENDIT_PACS_PASSWORD", "SENDIT_PACS_TOKEN"}
    # TLS material: the same Secret's keys as files, each optional, their paths in the env.
    pod = render_job(owner, b, "process", "img", POLICY)["spec"]["template"]["spec"]
    (tls,) = (v["secret"] for v in pod["volumes"] if v["name"] == "pacs-tls")
    assert tls["secretName"] == "pacs-login" and tls["optional"] is True
    assert [i["key"] for i in tls["items"]] == ["ca.crt", "tls.crt", "tls.key"]
    paths = {e["name"]: e.get("value") for e in container["env"]}
    assert paths["SENDIT_PACS_CA"] == "/sendit/pacs-tls/ca.crt"
    assert paths["SENDIT_PACS_KEY"] == "/sendit/pacs-tls/tls.key"
    assert problem(b.spec, lambda kind, name: name != "pacs-login") == (
        "Secret pacs-login not found (or the operator may not read it)"
    )


def test_a_dimse_pacs_with_storage_commitment_gets_the_listeners_port_named():
    dimse = {"host": "pacs", "port": 104, "calledAETitle": "PACS"}
    owner, b = batch(destinations={"pacs": {"dimse": dimse}})
    (container,) = render_job(owner, b, "process", "img", POLICY)["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["ports"] == [
        {"name": "dicom-commit", "containerPort": 11113, "protocol": "TCP"}
    ]
    dimse["storageCommitment"] = {"mode": "disabled"}
    owner, b = batch(destinations={"pacs": {"dimse": dimse}})
    (container,) = render_job(owner, b, "process", "img", POLICY)["spec"]["template"]["spec"][
        "containers"
    ]
    assert "ports" not in container


def test_each_delivering_shard_gets_a_service_for_its_commitment_reports():
    """A PACS that reports on a new association sends each report to the address it knows for
    the calling AE title: shard i calls as SENDIT-i and listens on port + i, behind a Service
    of its own that selects its pod by the Job's completion index."""
    dimse = {"host": "pacs", "port": 104, "calledAETitle": "PACS"}
    owner, b = batch(destinations={"pacs": {"dimse": dimse}})
    services = render_commit_services(owner, b, "process", 3)
    assert [s["metadata"]["name"] for s in services] == [
        "b1-commit-0",
        "b1-commit-1",
        "b1-commit-2",
    ]
    one = services[1]
    assert one["spec"]["selector"] == {
        "sendit.dev/batch": "b1",
        "sendit.dev/stage": "process",
        "batch.kubernetes.io/job-completion-index": "1",
    }
    assert one["spec"]["ports"] == [
        {"name": "dicom-commit", "port": 11114, "targetPort": 11114, "protocol": "TCP"}
    ]
    assert one["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    (container,) = render_job(owner, b, "process", "img", POLICY, 3)["spec"]["template"]["spec"][
        "containers"
    ]
    assert "ports" not in container  # one pod template cannot say port + index
    assert render_commit_services(owner, b, "plan", 1) == []  # the plan pod takes no reports
    manual, m = batch(destinations={"pacs": {"dimse": dimse}}, send="manual")
    assert render_commit_services(manual, m, "process", 3) == []
    assert len(render_commit_services(manual, m, "send", 3)) == 3
    dimse["storageCommitment"] = {"mode": "disabled"}
    owner, b = batch(destinations={"pacs": {"dimse": dimse}})
    assert render_commit_services(owner, b, "process", 3) == []
