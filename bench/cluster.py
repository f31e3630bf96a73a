"""One large batch end to end on the test control plane, as a user runs it: `kubectl apply` of a
SenditBatch of --files small images (series of 50, five patients) at --parallelism, a workspace
claim, a local destination; the operator plans it, the fake node (tests/controlplane) runs its
pods in the worker image that scripts/images.sh builds.

    bash scripts/images.sh && python bench/cluster.py [--files 100000] [--parallelism 4]

Prints, while it runs, the phase and counts every --every seconds; at the end:
- the plan pass (its pod's wall time, header reads) and each shard's images and header reads,
  from the batch's status (the workers count them);
- the batch's counts against the files written and the files delivered;
- peak RSS, sampled from the host every 0.5 s (a container's processes are host processes), of
  the largest process of each stage and of the largest pod (a worker and its pool together);
- wall time from `kubectl apply` to Sent.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from controlplane import build  # noqa: E402
from controlplane.fakenode import FakeNode  # noqa: E402
from controlplane.harness import ControlPlane, free_port  # noqa: E402
from policies import policy_file  # noqa: E402

from sendit_worker.cli.sample import make_series  # noqa: E402

NS = "bench"
KEY = "bench-key-0123456789abcdef"
IMAGE = os.environ.get("SENDIT_WORKER_IMAGE", "sendit-worker:test")
print = functools.partial(print, flush=True)


class Peaks(threading.Thread):
    """Peak RSS of the batch's worker processes, by stage: the largest process, and the largest
    pod (a `sendit worker` process plus its pool, which share its command line)."""

    def __init__(self, batch: str) -> None:
        super().__init__(daemon=True)
        self.batch, self.done = batch, threading.Event()
        self.process: dict[str, int] = defaultdict(int)
        self.pod: dict[str, int] = defaultdict(int)

    def stage(self, cmd: list[str]) -> str | None:
        if not cmd or Path(cmd[0]).name == "docker" or "worker" not in cmd:
            return None  # the fake node's `docker run` clients are not pods
        with contextlib.suppress(ValueError, IndexError):
            if cmd[cmd.index("--batch") + 1] == self.batch:
                return cmd[cmd.index("--stage") + 1]
        return None

    def run(self) -> None:
        while not self.done.wait(0.5):
            seen: dict[int, tuple[str, int, int]] = {}  # pid: stage, parent, RSS
            for p in psutil.process_iter(["cmdline", "ppid", "memory_info"]):
                stage = self.stage(p.info["cmdline"] or [])
                if stage is not None and p.info["memory_info"] is not None:
                    seen[p.pid] = (stage, p.info["ppid"], p.info["memory_info"].rss)
            pods: dict[int, tuple[str, int]] = {}  # a pod's worker process: stage, total RSS
            for pid, (stage, parent, rss) in seen.items():
                self.process[stage] = max(self.process[stage], rss)
                top = parent if parent in seen else pid
                pods[top] = (stage, pods.get(top, (stage, 0))[1] + rss)
            for stage, rss in pods.values():
                self.pod[stage] = max(self.pod[stage], rss)


def batch(name: str, data: Path, parallelism: int) -> dict:
    return {
        "apiVersion": "sendit.dev/v1alpha1",
        "kind": "SenditBatch",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "source": {"volume": {"hostPath": {"path": str(data / "in")}}, "folders": ["corpus"]},
            "deidentify": {"pseudonymKey": {"secretKeyRef": {"name": "key", "key": "k"}}},
            "destinations": {"local": {"path": str(data / "out")}},
            "parallelism": parallelism,
            "workspace": {"persistentVolumeClaim": {"claimName": "work"}},
            "image": IMAGE,
        },
    }


def setup(cluster: ControlPlane, node: FakeNode, data: Path) -> subprocess.Popen:
    """The CRDs, the operator's namespace and RBAC, the batch's namespace, key and workspace
    claim; then the operator, as its ServiceAccount."""
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
    cluster.kubectl("create", "namespace", "sendit-system")
    cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "rbac" / "operator.yaml"))
    cluster.kubectl("create", "namespace", NS)
    cluster.kubectl("-n", NS, "create", "secret", "generic", "key", f"--from-literal=k={KEY}")
    node.add_claim(NS, "work", data / "work")
    kubeconfig = cluster.token_kubeconfig("sendit-system", "sendit-operator")
    # The cluster's policy allows the batch's image, source and local destination.
    policy = policy_file(
        data / "policy.json", images=[IMAGE], host_paths=[data / "in"], local_paths=[data / "out"]
    )
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("sendit-operator")),
            *("--namespace", NS, "--liveness-port", str(free_port()), "--metrics-port", "0"),
            *("--policy", str(policy)),
        ],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=(data / "operator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def status(cluster: ControlPlane, name: str) -> dict:
    got = cluster.kubectl("-n", NS, "get", "sb", name, "-o", "json")
    return json.loads(got.stdout).get("status") or {}


def stage_seconds(cluster: ControlPlane, job: str) -> float | None:
    """A Job's wall time, from its own status (start to completion)."""
    got = json.loads(cluster.kubectl("-n", NS, "get", "job", job, "-o", "json").stdout)
    start, end = (got.get("status") or {}).get("startTime"), got["status"].get("completionTime")
    if not (start and end):
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between progress lines")
    parser.add_argument("--timeout", type=float, default=4 * 3600.0)
    args = parser.parse_args()
    print(f"cpus={len(os.sched_getaffinity(0))} files={args.files} parallelism={args.parallelism}")
    with tempfile.TemporaryDirectory(prefix="sendit-bench-cluster-") as folder:
        data = Path(folder)
        written = make_series(data / "in" / "corpus", [50] * (args.files // 50))
        (data / "out").mkdir()
        (data / "out").chmod(0o777)  # the workers' user (10001) writes here, as in the tests
        with ControlPlane(bin_dir=build.ensure_built()) as cluster:
            node = FakeNode(cluster, workdir=data / "node").start()
            operator = setup(cluster, node, data)
            try:
                run(cluster, data, written, args)
            finally:
                operator.terminate()
                operator.wait(30)
                node.stop()


def run(cluster: ControlPlane, data: Path, written: int, args: argparse.Namespace) -> None:
    peaks = Peaks("scale")
    peaks.start()
    start = time.monotonic()
    cluster.kubectl("apply", "-f", "-", input=json.dumps(batch("scale", data, args.parallelism)))
    last = start
    while (now := time.monotonic()) - start < args.timeout:
        seen = status(cluster, "scale")
        if seen.get("phase") in ("Sent", "Failed"):
            break
        if now - last >= args.every:
            last = now
            c = seen.get("counts") or {}
            print(
                f"{now - start:7.0f} s  {seen.get('phase')}: {c.get('anonymized', 0)} anonymized,"
                f" {c.get('sent', 0)} sent of {c.get('discovered', '?')}"
            )
        time.sleep(2)
    wall = time.monotonic() - start
    peaks.done.set()
    peaks.join()
    plan, shards, counts = seen.get("plan") or {}, seen.get("shards") or {}, seen["counts"]
    delivered = sum(1 for _ in (data / "out").rglob("*.dcm"))
    print(f"phase {seen['phase']} after {wall:.0f} s ({wall * 10_000 / written:.1f} s per 10k)")
    plan_s = stage_seconds(cluster, "scale-plan")
    print(
        f"plan pass: {plan_s} s ({(plan_s or 0) * 10_000 / written:.1f} s per 10k files),"
        f" headerReads {plan.get('headerReads')}, {plan.get('shards')} shards"
    )
    for i, shard in sorted(shards.items(), key=lambda kv: int(kv[0])):
        print(
            f"  shard {i}: {shard.get('discovered')} images, headerReads"
            f" {shard.get('headerReads')}, {shard.get('sent')} sent"
        )
    keys = ("discovered", "anonymized", "withheld", "failed", "skipped", "sent")
    print("counts: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in keys), end="")
    print(f"; studies {counts.get('studies')}, series {counts.get('series')}")
    print(f"files written {written}, delivered {delivered}")
    for stage in sorted(peaks.process):
        print(
            f"peak RSS, {stage}: largest process {peaks.process[stage] / 2**20:.0f} MB,"
            f" largest pod {peaks.pod[stage] / 2**20:.0f} MB"
        )


if __name__ == "__main__":
    main()
