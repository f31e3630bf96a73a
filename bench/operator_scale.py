"""Benchmark: apply 200 SenditBatches at once; time until every batch has its Job and a status,
the operator's peak RSS, and the API server's load (its own `apiserver_request_total`, by verb
and resource): during the burst, idle, and while every batch's shard reports progress the way
workers do (a merge patch of status.shards every PATCH_EVERY seconds, the workers' rate limit)
against reports 4x as often (standing in for no limit). Runs on the test control plane
(tests/controlplane), no node: the Jobs are made, not run; the shard reports are the bench's.

    python bench/operator_scale.py [--batches 200] [--window 20]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from controlplane import build  # noqa: E402
from controlplane.harness import ControlPlane  # noqa: E402
from policies import policy_file  # noqa: E402

from sendit_api.clock import timestamp  # noqa: E402
from sendit_api.names import GROUP, PLURAL, VERSION  # noqa: E402
from sendit_worker.run.progress import PATCH_EVERY  # noqa: E402

NS = "bench"
print = functools.partial(print, flush=True)
# The API server's requests that concern batches; the rest (leases, the controllers' own
# lists) is the control plane talking to itself.
RESOURCES = ("senditbatches", "jobs", "events", "serviceaccounts", "roles", "rolebindings")
SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the operator did not become ready")


def requests(cluster: ControlPlane) -> Counter:
    """Requests served so far, by (verb, resource/subresource), batch resources only."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    total: Counter = Counter()
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        if labels.get("resource") in RESOURCES:
            what = labels["resource"] + (
                f"/{labels['subresource']}" if labels.get("subresource") else ""
            )
            total[(labels["verb"], what)] += int(float(m["value"]))
    return total


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def table(delta: Counter, seconds: float | None = None) -> str:
    rows = sorted(((n, k) for k, n in delta.items() if n > 0), reverse=True)
    unit = "/s" if seconds else ""
    return "\n".join(
        f"    {verb:7} {what:28} {n / seconds if seconds else n:8.1f}{unit}"
        for n, (verb, what) in rows
    )


def report_progress(api, names: list[str], every: float, seconds: float) -> int:
    """Every batch's shard 0 reports progress every `every` seconds for `seconds`: the patches
    sent."""
    sent = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def one(name: str, n: int) -> None:
        nonlocal sent
        shard = {
            "stage": "processing",
            "discovered": 100000,
            "anonymized": n,
            "updated": timestamp(),
        }
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, NS, PLURAL, name, {"status": {"shards": {"0": shard}}}
        )
        with lock:
            sent += 1

    with ThreadPoolExecutor(16) as pool:
        n = 0
        while time.monotonic() < stop:
            tick = time.monotonic()
            n += 10
            list(pool.map(one, names, [n] * len(names)))
            time.sleep(max(0.0, every - (time.monotonic() - tick)))
    return sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--window", type=float, default=20.0, help="seconds of shard reports")
    args = parser.parse_args()
    n = args.batches
    with ControlPlane(bin_dir=build.ensure_built()) as cluster:
        for crd in sorted((ROOT / "crds").glob("*.yaml")):
            cluster.kubectl("apply", "-f", str(crd))
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all")
        cluster.kubectl("create", "namespace", NS)
        cluster.kubectl(
            "-n",
            NS,
            "create",
            "secret",
            "generic",
            "key",
            "--from-literal=k=bench-key-0123456789abcdef",
        )
        # The operator runs as the ServiceAccount of deploy/rbac (its ClusterRole), as deployed.
        cluster.kubectl("create", "namespace", "sendit-system")
        cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "rbac" / "operator.yaml"))
        kubeconfig = cluster.token_kubeconfig("sendit-system", "sendit-operator")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        liveness = free_port()
        log = Path(cluster.workdir) / "operator.log"
        # The cluster's policy allows the batches' node folders (no pod runs here).
        policy = policy_file(
            Path(cluster.workdir) / "policy.json",
            images=["sendit-worker:latest"],
            host_paths=["/data"],
            local_paths=["/out"],
        )
        operator = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("sendit-operator")),
                "-q",
                "--namespace",
                NS,
                "--max-running",
                str(n),
                "--liveness-port",
                str(liveness),
                "--metrics-port",
                "0",
                "--policy",
                str(policy),
            ],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        names = [f"b{i:04d}" for i in range(n)]
        items = [
            {
                "apiVersion": "sendit.dev/v1alpha1",
                "kind": "SenditBatch",
                "metadata": {"name": name, "namespace": NS},
                "spec": {
                    "source": {"volume": {"hostPath": {"path": "/data"}}, "folders": ["f"]},
                    "deidentify": {"pseudonymKey": {"secretKeyRef": {"name": "key", "key": "k"}}},
                    "destinations": {"local": {"path": "/out"}},
                },
            }
            for name in names
        ]
        wait_ready(liveness)  # the operator's startup, not timed
        before, cpu = requests(cluster), cpu_seconds(operator.pid)
        start = last = time.monotonic()
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
        while True:
            jobs = cluster.kubectl("-n", NS, "get", "jobs", "-o", "name").stdout.split()
            got = json.loads(cluster.kubectl("-n", NS, "get", "sb", "-o", "json").stdout)
            with_status = sum(bool((b.get("status") or {}).get("phase")) for b in got["items"])
            if len(jobs) >= n and with_status >= n:
                break
            if time.monotonic() - last > 5:
                last = time.monotonic()
                print(f"{last - start:5.1f} s: {len(jobs)} Jobs, {with_status} statuses")
            if time.monotonic() - start > 600:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - start
        burst = requests(cluster) - before
        burst_cpu = cpu_seconds(operator.pid) - cpu
        print(
            f"{n} batches: {len(jobs)} Jobs and {with_status} statuses in {elapsed:.1f} s; "
            f"operator CPU {burst_cpu:.1f} s"
        )
        print("  API requests for batches during the burst (the bench's own GETs included):")
        print(table(burst))

        def window(label: str, every: float | None) -> None:
            """Reports for --window seconds, then until the operator's patches stop (what it
            does late is still caused by them)."""
            before, cpu, t0 = requests(cluster), cpu_seconds(operator.pid), time.monotonic()
            sent = report_progress(api, names, every, args.window) if every else 0
            if not every:
                time.sleep(args.window)
            reporting = time.monotonic() - t0
            quiet, still, settled = requests(cluster), 0, time.monotonic()
            while still < 3 and time.monotonic() - t0 < reporting + 120:  # 3 polls unchanged
                time.sleep(2)
                now = requests(cluster)
                still = still + 1 if now == quiet else 0
                settled = settled if now == quiet else time.monotonic()
                quiet = now
            seconds = settled - t0
            delta = quiet - before
            used = cpu_seconds(operator.pid) - cpu
            ours = delta[("PATCH", "senditbatches/status")] - sent
            per = f", {ours / sent:.2f} per report" if sent else ""
            # When the machine cannot keep up, a batch reports less often than asked.
            achieved = f", each batch every {reporting * n / sent:.1f} s" if sent else ""
            print(
                f"  {label}: shard reports {sent} in {reporting:.0f} s ({sent / reporting:.1f}/s"
                f"{achieved}); "
                f"operator status patches {ours}{per}; operator done {seconds - reporting:.0f} s "
                f"after the last report; operator CPU {used:.1f} s; "
                f"batch requests {sum(delta.values()) / seconds:.1f}/s over {seconds:.0f} s"
            )
            print(table(delta))

        api = _custom_objects(cluster)
        window("idle (resync timers only)", None)
        window(f"shards reporting every {PATCH_EVERY:g} s (the workers' limit)", PATCH_EVERY)
        window(f"shards reporting every {PATCH_EVERY / 4:g} s (4x: no limit)", PATCH_EVERY / 4)
        status = Path(f"/proc/{operator.pid}/status").read_text()
        peak = next(line for line in status.splitlines() if line.startswith("VmHWM"))
        operator.terminate()
        operator.wait(30)
        print(f"operator peak RSS {peak.split(':')[1].strip()}; its log: {log}")


def _custom_objects(cluster: ControlPlane):
    from kubernetes import client

    api = cluster.api_client()
    api.configuration.connection_pool_maxsize = 16
    return client.CustomObjectsApi(api)


if __name__ == "__main__":
    main()
