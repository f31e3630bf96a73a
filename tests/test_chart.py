"""The Helm chart (charts/sendit) with a real helm binary, built from the Go module proxy by
tests/helm/build.py (cached under ~/.cache/sendit/helm/<hash>/bin/helm; the build FAILS the
tests when it cannot be done, it never skips).

Without a cluster: the chart's CRDs are the top-level crds/ byte for byte, values.schema.json
covers every value, `helm lint`, `helm template` for the main value combinations, the
schema rejecting bad values at render time, and the Grafana dashboard asking only for metrics
the operator exports.

On the real test control plane (`controlplane`): every rendered object passes a server-side
dry-run, the operator's and the workers' pods pass the restricted Pod Security admission,
`kubectl auth can-i` checks the RBAC of both modes, and `helm install` followed by a batch that
runs to Sent. In that last test nothing starts the operator by hand: the control plane's
Deployment and ReplicaSet controllers make the operator's Pod from the installed Deployment,
and the fake node (the harness's node test double) runs it in the operator image that
scripts/images.sh builds, with the chart's securityContext and the token of the chart's
operator ServiceAccount, so the RBAC in force is the chart's; the batches' workers run in the
worker image.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "sendit"
RELEASE_NS = "sendit-helm"
BATCH_NS = "sendit-helm-batches"
OPERATOR_IMAGE = os.environ.get("SENDIT_OPERATOR_IMAGE", "sendit-operator:test")
WORKER_IMAGE = os.environ.get("SENDIT_WORKER_IMAGE", "sendit-worker:test")


# ------------------------------------------------------------------------------ helm
# The `helm` fixture: tests/helm/plugin.py.


def set_args(values: dict) -> list[str]:
    """--set-json for each top-level key (exact types, no string coercion)."""
    return [a for k, v in values.items() for a in ("--set-json", f"{k}={json.dumps(v)}")]


NAMESPACED = {
    "operator": {"watchNamespaces": ["team-a", "team-b"]},
    "workerServiceAccount": {"annotations": {"iam.gke.io/gcp-service-account": "w@p.iam"}},
}
EVERYTHING = {
    "image": {"repository": "registry.example/sendit-operator", "digest": "sha256:" + "a" * 64},
    "workerImage": {"repository": "registry.example/sendit-worker", "tag": "1.2.3"},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        "statusPageFrom": [{"podSelector": {"matchLabels": {"app": "viewer"}}}],
        "egress": {"enabled": True, "apiServerCIDRs": ["10.0.0.1/32"]},
    },
    "secrets": {"googleCredentials": {"name": "gcp-key"}, "extraNames": ["dasher-token"]},
    "imagePullSecrets": [{"name": "regcred"}],
    "statusPage": {"enabled": True},
    "grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
}
NO_RESTRICTION = {"rbac": {"restrictSecrets": False}, "metrics": {"service": {"enabled": False}}}
COMBOS = {
    "default": {},
    "namespaced": NAMESPACED,
    "everything": EVERYTHING,
    "unrestricted": NO_RESTRICTION,
}


def render(helm, values: dict, *extra: str) -> list[dict]:
    out = helm(
        "template", "rel", str(CHART), "--namespace", RELEASE_NS, *set_args(values), *extra
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


# ------------------------------------------------------------------- without a cluster


def test_chart_crds_are_the_top_level_crds():
    """One source of truth. To resync: cp crds/*.yaml charts/sendit/crds/"""
    top = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert top, "no CRDs in crds/"
    assert sorted(chart) == sorted(top)
    stale = [name for name in top if chart[name] != top[name]]
    assert not stale, (
        f"charts/sendit/crds/ differ from crds/: {stale}; cp crds/*.yaml {CHART}/crds/"
    )


def _leaves(value, path=()):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    else:
        yield path


def test_schema_covers_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = []
    for path in _leaves(values):
        node = schema
        for key in path:
            props = node.get("properties") or {}
            if key in props:
                node = props[key]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            elif node.get("type") == "object" and "properties" not in node:
                break  # a free-form Kubernetes object (affinity, requests, ...)
            else:
                missing.append(".".join(path))
                break
    assert not missing, f"values without a schema: {missing}"

    def closed(node, where="values"):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{where} accepts unknown keys"
            for k, v in node["properties"].items():
                closed(v, f"{where}.{k}")

    closed(schema)


def test_helm_lint(helm):
    for name, values in COMBOS.items():
        proc = helm("lint", "--strict", str(CHART), *set_args(values), check=False)
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)


def test_default_render_watches_every_namespace(helm):
    kinds = by_kind(render(helm, {}))
    assert "Secret" not in kinds, "the chart never carries key material"
    (role,) = kinds["ClusterRole"]
    (binding,) = kinds["ClusterRoleBinding"]
    assert "Role" not in kinds and "RoleBinding" not in kinds
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-sendit-operator", "namespace": RELEASE_NS}
    ]
    rules = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules[("batch", "jobs")] == {"get", "list", "watch", "create", "patch", "delete"}
    assert not any(v & {"*", "escalate", "bind", "impersonate"} for v in rules.values())
    assert ("", "pods") not in rules and ("apps", "deployments") not in rules
    secret_rule = next(r for r in role["rules"] if r["resources"] == ["secrets"])
    assert secret_rule == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["sendit-pseudonym-key"],
        "verbs": ["get"],
    }
    sas = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in kinds["ServiceAccount"]}
    assert sas == {(RELEASE_NS, "rel-sendit-operator"), (RELEASE_NS, "sendit-worker")}

    (deploy,) = kinds["Deployment"]
    spec = deploy["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["sendit-operator"]
    assert c["args"] == [
        "--max-running=10",
        "--resync-seconds=30",
        "--worker-image=ghcr.io/sendit-dev/sendit-worker:0.1.0",
        "--policy=/etc/sendit/policy/policy.json",
        "--liveness-port=8080",
        "--metrics-port=9090",
    ]
    assert c["image"] == "ghcr.io/sendit-dev/sendit-operator:0.1.0"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    (svc,) = kinds["Service"]
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert "ServiceMonitor" not in kinds and "NetworkPolicy" not in kinds


def test_namespaced_render_has_roles_per_namespace_and_no_cluster_power(helm):
    kinds = by_kind(render(helm, NAMESPACED))
    roles = {r["metadata"]["namespace"] for r in kinds["Role"]}
    bindings = {r["metadata"]["namespace"] for r in kinds["RoleBinding"]}
    assert roles == bindings == {"team-a", "team-b"}
    (cluster_role,) = kinds["ClusterRole"]
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        }
    ]
    (deploy,) = kinds["Deployment"]
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    workers = {
        s["metadata"]["namespace"]: s
        for s in kinds["ServiceAccount"]
        if s["metadata"]["name"] == "sendit-worker"
    }
    assert set(workers) == {"team-a", "team-b"}
    assert workers["team-a"]["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "w@p.iam"
    }


def test_everything_render(helm):
    kinds = by_kind(render(helm, EVERYTHING))
    (deploy,) = kinds["Deployment"]
    c = deploy["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example/sendit-operator@sha256:" + "a" * 64
    assert "--worker-image=registry.example/sendit-worker:1.2.3" in c["args"]
    assert deploy["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    (monitor,) = kinds["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    (policy,) = kinds["NetworkPolicy"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert policy["spec"]["ingress"][1] == {
        "ports": [{"port": "status", "protocol": "TCP"}],
        "from": [{"podSelector": {"matchLabels": {"app": "viewer"}}}],
    }
    assert "--status-port=8081" in c["args"]
    assert {"name": "status", "containerPort": 8081, "protocol": "TCP"} in c["ports"]
    (service,) = kinds["Service"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics", "status"]
    (dashboard,) = [c for c in kinds["ConfigMap"] if "sendit.json" in c["data"]]
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["sendit.json"]) == json.loads(DASHBOARD.read_text())
    secret_rule = next(r for r in kinds["ClusterRole"][0]["rules"] if r["resources"] == ["secrets"])
    assert secret_rule["resourceNames"] == ["sendit-pseudonym-key", "gcp-key", "dasher-token"]


def test_status_page_and_dashboard_are_off_by_default(helm):
    kinds = by_kind(render(helm, {"networkPolicy": {"enabled": True}}))
    (deploy,) = kinds["Deployment"]
    c = deploy["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in c["args"] if a.startswith("--status-port")]
    assert [p["name"] for p in c["ports"]] == ["healthz", "metrics"]
    assert [p["name"] for p in kinds["Service"][0]["spec"]["ports"]] == ["metrics"]
    assert len(kinds["NetworkPolicy"][0]["spec"]["ingress"]) == 1
    assert [c["metadata"]["name"] for c in kinds["ConfigMap"]] == ["rel-sendit-policy"]


# PromQL words that are not metric names (functions are followed by a parenthesis).
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset"}
DASHBOARD = CHART / "dashboards" / "sendit.json"


def promql_metrics(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions, keywords,
    label names (in matchers and by/without/on lists), strings or range durations."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", expr)
    return {n for n in names if n not in PROMQL_KEYWORDS}


def exported_metrics() -> set[str]:
    """What the operator's registry exposes, sample names included (a counter's _total, a
    histogram's _bucket/_sum/_count): its metrics module registers them on import."""
    from prometheus_client import REGISTRY

    import sendit_operator.metrics  # noqa: F401

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_promql_metrics_reads_metric_names_only():
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(sendit_delivery_seconds_bucket{x="a b"}'
        "[$__rate_interval]))) / on (phase) sendit_batches offset 5m"
    )
    assert promql_metrics(expr) == {"sendit_delivery_seconds_bucket", "sendit_batches"}


def test_grafana_dashboard_asks_only_for_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = {
        p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"] if "targets" in p
    }
    wanted = {"Batches by phase", "Images by outcome", "Throughput", "Batch durations"}
    assert wanted <= set(exprs)
    used = {name for title in exprs for e in exprs[title] for name in promql_metrics(e)}
    exported = exported_metrics()
    assert used <= exported, used - exported
    assert {
        "sendit_batches",
        "sendit_images_total",
        "sendit_images_by_reason_total",
        "sendit_delivery_seconds_bucket",
        "sendit_batch_duration_seconds_bucket",
    } <= used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"]


def test_unrestricted_secrets_and_no_metrics_service(helm):
    kinds = by_kind(render(helm, NO_RESTRICTION))
    secret_rule = next(r for r in kinds["ClusterRole"][0]["rules"] if r["resources"] == ["secrets"])
    assert "resourceNames" not in secret_rule and secret_rule["verbs"] == ["get"]
    assert "Service" not in kinds


POLICY_KEYS = ["hostPathPrefixes", "images", "localPathPrefixes", "serviceAccounts"]
POLICY_KEYS += ["sourceVolumes"]


def policy_of(kinds: dict[str, list[dict]]) -> tuple[dict, dict | None]:
    """The policy as the operator reads it (the ConfigMap's JSON), and as the admission
    policy's variables hold it (CEL lists, which JSON lists of strings are), if rendered."""
    (config,) = [c for c in kinds["ConfigMap"] if "policy.json" in c["data"]]
    operator = json.loads(config["data"]["policy.json"])
    if "ValidatingAdmissionPolicy" not in kinds:
        return operator, None
    (vap,) = kinds["ValidatingAdmissionPolicy"]
    variables = {v["name"]: v["expression"] for v in vap["spec"]["variables"]}
    return operator, {k: json.loads(variables[k]) for k in POLICY_KEYS}


def test_the_policy_is_one_set_of_values_for_both_layers(helm):
    kinds = by_kind(render(helm, {}))
    operator, admission = policy_of(kinds)
    assert (
        operator
        == admission
        == {
            "images": ["ghcr.io/sendit-dev/sendit-worker:0.1.0"],  # the chart's worker image only
            "serviceAccounts": ["sendit-worker"],  # the chart's worker account
            "sourceVolumes": ["persistentVolumeClaim", "nfs", "csi"],
            "hostPathPrefixes": [],
            "localPathPrefixes": [],
        }
    )
    assert sorted(operator) == POLICY_KEYS
    (deploy,) = kinds["Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "policy")
    assert "--policy=" + mount["mountPath"] + "/policy.json" in pod["containers"][0]["args"]
    volume = next(v for v in pod["volumes"] if v["name"] == "policy")
    assert volume["configMap"]["name"] == "rel-sendit-policy"
    (binding,) = kinds["ValidatingAdmissionPolicyBinding"]
    assert (
        binding["spec"]["policyName"] == kinds["ValidatingAdmissionPolicy"][0]["metadata"]["name"]
    )
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert "matchResources" not in binding["spec"]  # every namespace, as the operator watches


def test_the_admins_policy_values_reach_both_layers(helm):
    chosen = {
        "images": ["registry.example/sendit/*"],
        "serviceAccounts": ["gcs-writer"],
        "sourceVolumes": ["persistentVolumeClaim"],
        "hostPathPrefixes": ["/mnt/exports"],
        "localPathPrefixes": ["/srv/sendit", "/srv/more"],
    }
    kinds = by_kind(render(helm, {"policy": {"admission": True, **chosen}, **NAMESPACED}))
    operator, admission = policy_of(kinds)
    expected = {
        **chosen,
        "images": ["ghcr.io/sendit-dev/sendit-worker:0.1.0", "registry.example/sendit/*"],
        "serviceAccounts": ["sendit-worker", "gcs-writer"],
    }
    assert operator == admission == expected
    (binding,) = kinds["ValidatingAdmissionPolicyBinding"]
    selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert selector == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
    ]
    off = by_kind(render(helm, {"policy": {"admission": False, **chosen}}))
    assert "ValidatingAdmissionPolicy" not in off and "ValidatingAdmissionPolicyBinding" not in off
    assert policy_of(off) == (expected, None)  # the operator's check stays


BAD_VALUES = {
    "typo at the top": {"operater": {}},
    "typo in operator": {"operator": {"maxRuning": 3}},
    "wrong type": {"operator": {"maxRunning": "ten"}},
    "zero running": {"operator": {"maxRunning": 0}},
    "bad namespace": {"operator": {"watchNamespaces": ["Team_A"]}},
    "root allowed": {"podSecurityContext": {"runAsNonRoot": False}},
    "privileged": {"securityContext": {"privileged": True}},
    "escalation": {"securityContext": {"allowPrivilegeEscalation": True}},
    "capabilities kept": {"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
    "pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "digest": {"image": {"digest": "latest"}},
    "port": {"operator": {"metricsPort": 70000}},
    "secret key": {"secrets": {"pseudonymKey": {"name": "k", "key": "a b"}}},
    "interval": {"metrics": {"serviceMonitor": {"enabled": True, "interval": "often"}}},
    "node root": {"policy": {"hostPathPrefixes": ["/"]}},
    "relative folder": {"policy": {"localPathPrefixes": ["srv/out"]}},
    "climbing folder": {"policy": {"hostPathPrefixes": ["/srv/../etc"]}},
    "trailing slash": {"policy": {"localPathPrefixes": ["/srv/"]}},
    "hostPath as a kind": {"policy": {"sourceVolumes": ["hostPath"]}},
    "policy typo": {"policy": {"image": ["x"]}},
}


@pytest.mark.parametrize("case", BAD_VALUES, ids=list(BAD_VALUES))
def test_schema_rejects_bad_values(helm, case):
    proc = helm("template", "rel", str(CHART), *set_args(BAD_VALUES[case]), check=False)
    assert proc.returncode != 0, f"{case} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


# ---------------------------------------------------------------- on the control plane

SERVICE_MONITOR_STAND_IN = """
# A STAND-IN for the Prometheus Operator's ServiceMonitor CRD (same group, kind and version,
# schema left open) so the ServiceMonitor can be dry-run; the real CRD is not vendored here.
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors,
          singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def ensure_namespace(cluster, name: str, **labels: str) -> None:
    if cluster.kubectl("get", "namespace", name, check=False).returncode != 0:
        cluster.kubectl("create", "namespace", name)
    if labels:
        cluster.kubectl(
            "label", "--overwrite", "namespace", name, *[f"{k}={v}" for k, v in labels.items()]
        )


@pytest.fixture(scope="module")
def cluster(kube_cluster):
    for crd in sorted((CHART / "crds").glob("*.yaml")):
        kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    kube_cluster.kubectl("apply", "-f", "-", input=SERVICE_MONITOR_STAND_IN)
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    for ns in (RELEASE_NS, "team-a", "team-b", "monitoring"):  # monitoring: the dashboard
        ensure_namespace(kube_cluster, ns)
    return kube_cluster


@pytest.mark.controlplane
@pytest.mark.parametrize("combo", COMBOS)
def test_server_side_dry_run_of_every_rendered_object(helm, cluster, combo):
    docs = render(helm, COMBOS[combo], "--include-crds")
    proc = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input=yaml.safe_dump_all(docs),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == len(docs), proc.stdout


def pod_from_template(template: dict, name: str, namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": template["metadata"].get("labels", {}),
        },
        "spec": template["spec"],
    }


RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.mark.controlplane
def test_operator_pod_meets_the_restricted_pod_security_standard(helm, cluster):
    """The API server's own PodSecurity admission judges the operator's Pod."""
    ensure_namespace(cluster, "sendit-restricted", **RESTRICTED)
    (deploy,) = by_kind(render(helm, {}))["Deployment"]
    pod = pod_from_template(deploy["spec"]["template"], "operator", "sendit-restricted")
    pod["spec"]["serviceAccountName"] = "default"
    proc = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "violate PodSecurity" not in proc.stderr


@pytest.mark.controlplane
def test_worker_pod_meets_the_restricted_pod_security_standard(cluster):
    from sendit_api.spec import parse_batch
    from sendit_operator.children import render_job
    from sendit_operator.policy import Policy

    ensure_namespace(cluster, "sendit-restricted", **RESTRICTED)
    body = {
        "apiVersion": "sendit.dev/v1alpha1",
        "kind": "SenditBatch",
        "metadata": {"name": "b", "namespace": "sendit-restricted", "uid": "u"},
        "spec": {
            "source": {"volume": {"persistentVolumeClaim": {"claimName": "src"}}, "folders": ["x"]},
            "deidentify": {"pixels": {}},
            "destinations": {"gcs": {"bucket": "bkt"}},
            "send": "auto",
            "parallelism": 1,
            "backoffLimit": 1,
        },
    }
    policy = Policy.strict("sendit-worker:0.1.0")
    job = render_job(body, parse_batch(body), "process", "sendit-worker:0.1.0", policy)
    pod = pod_from_template(job["spec"]["template"], "worker", "sendit-restricted")
    pod["spec"]["serviceAccountName"] = "default"
    proc = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert proc.returncode == 0, proc.stderr


def can_i(cluster, sa: str, verb: str, resource: str, namespace: str | None = None) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={sa}"]
    args += ["-n", namespace] if namespace else []
    proc = cluster.kubectl(*args, check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc.stdout + proc.stderr
    return proc.stdout.strip() == "yes"


OPERATOR_CAN = [
    ("create", "jobs.batch"),
    ("delete", "jobs.batch"),
    ("watch", "senditbatches.sendit.dev"),
    ("patch", "senditbatches.sendit.dev/status"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts"),
    ("create", "cronjobs.batch"),
    ("create", "events"),
    ("list", "events"),
    ("get", "configmaps"),
    ("get", "secrets/sendit-pseudonym-key"),
]
OPERATOR_CANNOT = [
    ("get", "secrets/someone-elses"),
    ("list", "secrets"),
    ("create", "pods"),
    ("delete", "senditbatches.sendit.dev"),
    ("update", "deployments.apps"),
    ("escalate", "roles.rbac.authorization.k8s.io"),
    ("bind", "roles.rbac.authorization.k8s.io"),
    ("impersonate", "serviceaccounts"),
    ("delete", "roles.rbac.authorization.k8s.io"),
]


@pytest.mark.controlplane
def test_cluster_wide_rbac_with_auth_can_i(helm, cluster):
    """All-namespaces mode: apply only the identity objects (no Deployment: an operator
    watching every namespace would take other tests' batches) and ask the API server."""
    docs = [
        d
        for d in render(helm, {"fullnameOverride": "cw"})
        if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    sa = f"system:serviceaccount:{RELEASE_NS}:cw-operator"
    for ns in ("team-a", "default"):
        for verb, resource in OPERATOR_CAN:
            assert can_i(cluster, sa, verb, resource, ns), (verb, resource, ns)
        for verb, resource in OPERATOR_CANNOT:
            assert not can_i(cluster, sa, verb, resource, ns), (verb, resource, ns)
    assert can_i(cluster, sa, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(cluster, sa, "create", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(cluster, sa, "create", "clusterroles.rbac.authorization.k8s.io")
    worker = f"system:serviceaccount:{RELEASE_NS}:sendit-worker"
    assert not can_i(cluster, worker, "get", "senditbatches.sendit.dev", RELEASE_NS)
    assert not can_i(cluster, worker, "get", "secrets", RELEASE_NS)


# ------------------------------------------------------------ helm install, batch to Sent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def installed(helm, cluster, fake_node, tmp_path_factory):
    """`helm install` in namespaced mode (watching BATCH_NS only, so no other test's batch is
    touched). The fake node runs the operator Pod the installed Deployment makes."""
    ensure_namespace(cluster, BATCH_NS)
    data = tmp_path_factory.mktemp("helm-data")
    ports = {"livenessPort": free_port(), "metricsPort": free_port()}
    values = {
        "operator": {"watchNamespaces": [BATCH_NS], "resyncSeconds": 2, **ports},
        # `batch`'s node folders: its source, and the local destination's folder.
        "policy": {
            "hostPathPrefixes": [str(data / "in")],
            "localPathPrefixes": [str(data / "out")],
        },
        "secrets": {"extraNames": ["absent-key"]},  # allowed to read, but never created
        "image": dict(zip(("repository", "tag"), OPERATOR_IMAGE.rsplit(":", 1), strict=True)),
        "workerImage": dict(zip(("repository", "tag"), WORKER_IMAGE.rsplit(":", 1), strict=True)),
    }
    helm(
        "install",
        "sendit",
        str(CHART),
        "--namespace",
        RELEASE_NS,
        *set_args(values),
        kubeconfig=cluster.kubeconfig,
    )
    deploy = "deployment/sendit-operator"
    cluster.kubectl("-n", RELEASE_NS, "rollout", "status", deploy, "--timeout=120s")
    from dicomdata import KEY

    from sendit_worker.cli.sample import make_sample

    make_sample(data / "in" / "ST-1", patients=2, files=6)
    cluster.kubectl(
        "-n",
        BATCH_NS,
        "create",
        "secret",
        "generic",
        "sendit-pseudonym-key",
        f"--from-literal=key={KEY.decode()}",
    )
    info = {"data": data, **ports}
    yield info
    helm(
        "uninstall",
        "sendit",
        "--namespace",
        RELEASE_NS,
        "--wait",
        "--timeout=60s",
        kubeconfig=cluster.kubeconfig,
        check=False,
    )


def batch(name: str, data: Path, **spec) -> str:
    out = data / "out"  # policy.localPathPrefixes: writable for the workers' user, by an admin
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o777)
    body = {
        "apiVersion": "sendit.dev/v1alpha1",
        "kind": "SenditBatch",
        "metadata": {"name": name, "namespace": BATCH_NS},
        "spec": {
            "source": {"volume": {"hostPath": {"path": str(data / "in")}}, "folders": ["ST-1"]},
            "deidentify": {
                "pseudonymKey": {"secretKeyRef": {"name": "sendit-pseudonym-key", "key": "key"}}
            },
            "destinations": {"local": {"path": str(data / "out" / name)}},
            "parallelism": 1,  # above 1 needs a shared workspace (tests/test_operator_cluster.py)
            **spec,
        },
    }
    return json.dumps(body)


def operator_pods(cluster) -> list[dict]:
    """The installed operator's Pods (the Deployment's, made by the real controllers)."""
    listing = cluster.kubectl(
        "-n", RELEASE_NS, "get", "pods", "-l", "app.kubernetes.io/component=operator", "-o", "json"
    )
    return json.loads(listing.stdout)["items"]


@pytest.mark.controlplane
def test_installed_operator_pod_runs_with_the_charts_identity(cluster, installed):
    pods = operator_pods(cluster)
    assert len(pods) == 1
    assert pods[0]["spec"]["serviceAccountName"] == "sendit-operator"
    assert pods[0]["status"]["phase"] == "Running"
    healthz = f"http://127.0.0.1:{installed['livenessPort']}/healthz"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(healthz, timeout=5) as response:
                assert response.status == 200
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.mark.controlplane
def test_notes_tell_what_to_do_next(helm, cluster, installed):
    notes = helm("get", "notes", "sendit", "--namespace", RELEASE_NS, kubeconfig=cluster.kubeconfig)
    for step in (
        "rollout status deployment/sendit-operator",
        "create secret generic sendit-pseudonym-key",
        f"The operator watches the namespaces: {BATCH_NS}",
        "kubectl -n NS wait --for=condition=Ready senditbatch/NAME",
        "port-forward svc/sendit-operator-metrics 9090",
        "kubectl apply --server-side",
    ):
        assert step in notes.stdout, step


@pytest.mark.controlplane
def test_namespaced_rbac_with_auth_can_i(cluster, installed):
    sa = f"system:serviceaccount:{RELEASE_NS}:sendit-operator"
    for verb, resource in OPERATOR_CAN:
        assert can_i(cluster, sa, verb, resource, BATCH_NS), (verb, resource)
    for verb, resource in OPERATOR_CANNOT:
        assert not can_i(cluster, sa, verb, resource, BATCH_NS), (verb, resource)
    for verb, resource in OPERATOR_CAN[:3]:
        assert not can_i(cluster, sa, verb, resource, "default"), (verb, resource)
    assert not can_i(cluster, sa, "list", "namespaces")
    assert can_i(cluster, sa, "watch", "customresourcedefinitions.apiextensions.k8s.io")


def wait_ready(cluster, name: str, timeout: int = 180) -> dict:
    proc = cluster.kubectl(
        "-n",
        BATCH_NS,
        "wait",
        "--for=condition=Ready",
        f"senditbatch/{name}",
        f"--timeout={timeout}s",
        check=False,
    )
    body = json.loads(cluster.kubectl("-n", BATCH_NS, "get", "sb", name, "-o", "json").stdout)
    assert proc.returncode == 0, (proc.stderr, body.get("status"))
    return body


def kstatus_of(cluster, name: str) -> tuple[dict, str]:
    """The batch and what the real kstatus library (test_gitops.kstatus) computes for it."""
    from test_gitops import kstatus

    body = json.loads(cluster.kubectl("-n", BATCH_NS, "get", "sb", name, "-o", "json").stdout)
    return body, kstatus([body])[0]["status"]


@pytest.mark.controlplane
def test_helm_installed_operator_runs_a_batch_to_sent(cluster, installed):
    cluster.kubectl("apply", "-f", "-", input=batch("helm-auto", installed["data"]))
    seen: list[str] = []  # kstatus after the operator's first status write
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        body, status = kstatus_of(cluster, "helm-auto")
        if body.get("status", {}).get("conditions"):
            if not seen or seen[-1] != status:
                seen.append(status)
            if body["status"]["phase"] == "Sent":
                break
        time.sleep(0.2)
    assert seen and seen[-1] == "Current", seen
    assert "InProgress" in seen and "Failed" not in seen, seen
    body = wait_ready(cluster, "helm-auto")
    status = body["status"]
    assert status["phase"] == "Sent"
    assert status["counts"]["discovered"] == 6
    assert status["counts"]["sent"] == status["counts"]["anonymized"] > 0
    assert status["observedGeneration"] == body["metadata"]["generation"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    # kstatus: Current = not Reconciling, not Stalled, generation observed.
    assert conditions["Reconciling"] == conditions["Stalled"] == "False"
    job = json.loads(
        cluster.kubectl("-n", BATCH_NS, "get", "job", "helm-auto-process", "-o", "json").stdout
    )
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == WORKER_IMAGE
    events = cluster.kubectl(
        "-n",
        BATCH_NS,
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=SenditBatch,involvedObject.name=helm-auto",
        "-o",
        "json",
    ).stdout
    assert json.loads(events)["items"], "the operator posts Events on phase changes"
    metrics = (
        urllib.request.urlopen(f"http://127.0.0.1:{installed['metricsPort']}/metrics", timeout=10)
        .read()
        .decode()
    )
    assert "sendit_batches" in metrics


@pytest.mark.controlplane
def test_batch_with_the_charts_worker_account(cluster, installed):
    """spec.serviceAccountName: the chart's shared worker ServiceAccount."""
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=batch("helm-shared-sa", installed["data"], serviceAccountName="sendit-worker"),
    )
    assert wait_ready(cluster, "helm-shared-sa")["status"]["phase"] == "Sent"


def apply_until_stalled(cluster, installed, name: str, *, key_secret: str) -> None:
    """Apply a batch whose pseudonym key is the Secret `key_secret`; wait for Stalled=True."""
    body = json.loads(batch(name, installed["data"]))
    body["spec"]["deidentify"]["pseudonymKey"]["secretKeyRef"]["name"] = key_secret
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    proc = cluster.kubectl(
        "-n",
        BATCH_NS,
        "wait",
        "--for=condition=Stalled",
        f"senditbatch/{name}",
        "--timeout=60s",
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.controlplane
def test_missing_secret_is_stalled_not_ready(cluster, installed):
    """kstatus reads Stalled=True as Failed; `kubectl wait` for Ready does not return."""
    apply_until_stalled(cluster, installed, "helm-nokey", key_secret="absent-key")
    got = json.loads(
        cluster.kubectl("-n", BATCH_NS, "get", "sb", "helm-nokey", "-o", "json").stdout
    )
    conditions = {c["type"]: c for c in got["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Stalled"]["reason"] == "InvalidReference"
    assert kstatus_of(cluster, "helm-nokey")[1] == "Failed"


@pytest.mark.controlplane
def test_secret_outside_the_allowed_names_is_stalled_not_ready(cluster, installed):
    """With rbac.restrictSecrets the operator cannot read a Secret not named in the values:
    the batch must still say so in its status (not just in the operator's log)."""
    cluster.kubectl(
        "-n", BATCH_NS, "create", "secret", "generic", "not-listed", "--from-literal=key=x"
    )
    apply_until_stalled(cluster, installed, "helm-forbidden", key_secret="not-listed")


@pytest.mark.controlplane
def test_upgrade_crds_then_release_recreates_the_operator(helm, cluster, installed):
    """The documented upgrade: CRDs first (server-side apply), then `helm upgrade`; the
    Recreate strategy never runs two operator pods at once."""
    crds = helm("show", "crds", str(CHART)).stdout
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crds)
    before = cluster.kubectl(
        "-n",
        RELEASE_NS,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=operator",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ).stdout.split()
    helm(
        "upgrade",
        "sendit",
        str(CHART),
        "--namespace",
        RELEASE_NS,
        "--reuse-values",
        "--set",
        "operator.maxRunning=3",
        kubeconfig=cluster.kubeconfig,
    )
    deadline, most = time.monotonic() + 120, 0
    while time.monotonic() < deadline:
        pods = operator_pods(cluster)
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        most = max(most, len(live))
        names = [p["metadata"]["name"] for p in live]
        if names and not set(names) & set(before) and live[0]["status"].get("phase") == "Running":
            break
        time.sleep(0.5)
    assert names and not set(names) & set(before), names
    assert most == 1, "two operator pods were live at once"
    args = live[0]["spec"]["containers"][0]["args"]
    assert "--max-running=3" in args
    cluster.kubectl("apply", "-f", "-", input=batch("helm-after-upgrade", installed["data"]))
    assert wait_ready(cluster, "helm-after-upgrade")["status"]["phase"] == "Sent"


def _flat_rules(role: dict) -> set[tuple]:
    return {
        (group, resource, verb, tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_deploy_rbac_is_what_the_chart_renders(helm):
    """deploy/rbac/operator.yaml (plain YAML for kubectl users) grants exactly what the chart's
    cluster-wide ClusterRole does (with Secrets unrestricted, as the plain YAML cannot know
    their names): one set of permissions, two packagings."""
    plain = yaml.safe_load_all((ROOT / "deploy" / "rbac" / "operator.yaml").read_text())
    (plain_role,) = [d for d in plain if d["kind"] == "ClusterRole"]
    (chart_role,) = by_kind(render(helm, NO_RESTRICTION))["ClusterRole"]
    assert _flat_rules(plain_role) == _flat_rules(chart_role)
