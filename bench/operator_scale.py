"""Benchmark: apply 200 SenditBatches at once; time until every batch has its Job and a status,
and the operator's peak RSS. Runs on the test control plane (tests/controlplane), no node:
the Jobs are made, not run.  python bench/operator_scale.py [--batches 200]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from controlplane import build  # noqa: E402
from controlplane.harness import ControlPlane  # noqa: E402

NS = "bench"
print = functools.partial(print, flush=True)


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    n = parser.parse_args().batches
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
            ],
            env=env,
        )
        items = [
            {
                "apiVersion": "sendit.dev/v1alpha1",
                "kind": "SenditBatch",
                "metadata": {"name": f"b{i:04d}", "namespace": NS},
                "spec": {
                    "source": {"volume": {"hostPath": {"path": "/data"}}, "folders": ["f"]},
                    "deidentify": {"pseudonymKey": {"secretKeyRef": {"name": "key", "key": "k"}}},
                    "destinations": {"local": {"path": "/out"}},
                },
            }
            for i in range(n)
        ]
        wait_ready(liveness)  # the operator's startup, not timed
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
        status = Path(f"/proc/{operator.pid}/status").read_text()
        peak = next(line for line in status.splitlines() if line.startswith("VmHWM"))
        operator.terminate()
        operator.wait(30)
        print(
            f"{n} batches: {len(jobs)} Jobs and {with_status} statuses in {elapsed:.1f} s; "
            f"operator peak RSS {peak.split(':')[1].strip()}"
        )


if __name__ == "__main__":
    main()
