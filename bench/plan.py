"""Benchmark of the plan stage: header reads per pod, shard balance, memory and plan-pass time.

    python bench/plan.py [--files 1000 --files 20000 --files 100000] [--pods 4] [--laptop-files N]

Prints, in one run:
- header reads per pod on a skewed corpus with `--pods` pods: before the plan stage every pod
  discovered every file (N x files, by construction of the old `pipeline.run`: discover all,
  then keep the series whose hash fell in its shard); now, counted by the workers (the plan
  pass's `headerReads` and each shard's, as they patch them into the status);
- shard balance on that corpus (max shard images / mean shard images): the old hash sharding
  (sha256 of the series UID modulo N, as `shard_of` was) against the plan's dealing;
- at each --files (small images, series of 50): the peak RSS of the plan pass, and of a pod
  processing a ~1,000-image shard of that plan, sampled from a subprocess: of its main process
  (the walk, the plan, the report) and of its largest pool process (a series at a time, with
  the text detector of the pixel stage loaded);
  the plan pass's wall time per 10,000 files; and the peak of `sendit run` end to end, up to
  --laptop-files (it de-identifies every file: minutes at 20,000 on two CPUs).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from sendit_worker.cli.sample import make_series

KEY = "bench-key-0123456789abcdef"
SKEW = [500, 300, 200] + [10] * 50 + [1] * 500  # a few large series and many small ones


def _batch(parallelism: int) -> dict:
    return {
        "apiVersion": "sendit.dev/v1alpha1",
        "kind": "SenditBatch",
        "metadata": {"name": "bench", "namespace": "bench", "uid": "uid-bench"},
        "spec": {
            "source": {"folders": ["corpus"]},
            "destinations": {"local": {"path": "/local"}},
            "parallelism": parallelism,
        },
    }


def child(stage: str, tmp: Path, parallelism: int, index: int, count: int) -> None:
    """One pod's work (`sendit worker` without the API server): the plan stage, or a shard."""
    from sendit_api.spec import parse_batch
    from sendit_worker.run.batch import plan_batch, run_batch
    from sendit_worker.run.placement import PodPlacement
    from sendit_worker.run.progress import StatusProgress

    batch = parse_batch(_batch(parallelism))
    mounts = (tmp, tmp / "work", tmp / "config", tmp / "local", "uid-bench")
    placement = PodPlacement(*mounts, (index, count), planned=parallelism > 1)
    if stage == "plan":
        print(json.dumps(plan_batch(batch, placement).as_status()))
        return
    patches: list[dict] = []
    run_batch(batch, placement, StatusProgress(patches.append, index), deliver=True)
    shard: dict = {}  # as its merge patches leave it
    for patch in patches:
        shard.update(patch["status"]["shards"][str(index)])
    print(json.dumps(shard))


def pod(stage: str, tmp: Path, parallelism: int, index: int = 0, count: int = 1) -> tuple:
    """One pod's work in a subprocess: (status.plan or its shard's report, wall s, peak RSS of
    its largest process)."""
    args = [sys.executable, __file__, "--child", stage, str(tmp), str(parallelism)]
    start = time.perf_counter()
    proc = psutil.Popen(
        [*args, str(index), str(count)],
        env={**os.environ, "SENDIT_PSEUDONYM_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    peak = _sample(proc)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the {stage} pod failed ({proc.returncode})")
    return json.loads(out), time.perf_counter() - start, peak


@dataclass
class Peak:
    main: int = 0  # bytes
    pool: int = 0  # the largest pool process

    def __str__(self) -> str:
        return f"main {self.main / 2**20:4.0f} MB, pool {self.pool / 2**20:4.0f} MB"


def _sample(proc: psutil.Popen) -> Peak:
    """Peak RSS of the main process and of the largest of its pool, sampled every 20 ms until
    it ends."""
    peak = Peak()
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):  # a process ended while sampled
            peak.main = max(peak.main, proc.memory_info().rss)
            peak.pool = max(peak.pool, 0, *(p.memory_info().rss for p in proc.children(True)))
        time.sleep(0.02)
    return peak


def _header_floor(files: list[Path]) -> float:
    """Seconds per 10,000 files to read their headers in this process, one after the other:
    what the plan pass does per file, without its pool, its walk or its SQLite file."""
    from sendit_worker.intake.discovery import Candidate, read_header

    start = time.perf_counter()
    for f in files:
        read_header(Candidate(f, f.parent))
    return (time.perf_counter() - start) * 10_000 / len(files)


def old_shard(series_uid: str, count: int) -> int:
    """The old `pipeline.shard_of`: a hash of the series UID, blind to its size."""
    return int.from_bytes(hashlib.sha256(series_uid.encode()).digest()[:8], "big") % count


def balance(per_shard: list[int]) -> float:
    return max(per_shard) / (sum(per_shard) / len(per_shard))


def skewed(pods: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        files = make_series(tmp / "corpus", SKEW)
        plan, _, _ = pod("plan", tmp, pods)
        shards = plan["shards"]
        reports = [pod("process", tmp, pods, i, shards)[0] for i in range(shards)]
        from sendit_worker.intake.planner import Plan

        with Plan(tmp / "work" / "uid-bench" / "plan.sqlite") as p:
            series = p.db.execute("SELECT uid, images FROM series").fetchall()
        hashed = [0] * pods
        for uid, images in series:
            hashed[old_shard(uid, pods)] += images
        dealt = [r["discovered"] for r in reports]
        print(f"skewed corpus: {files} files in {len(SKEW)} series, {pods} pods")
        print(
            f"  header reads per pod, before: {files} on each of {pods} pods"
            f" ({pods * files} in all)"
        )
        print(
            f"  header reads, after: plan pod {plan['headerReads']},"
            f" shard pods {[r['headerReads'] for r in reports]}"
            f" ({plan['headerReads'] + sum(r['headerReads'] for r in reports)} in all)"
        )
        print(f"  images per shard, before (hash): {hashed}  max/mean {balance(hashed):.2f}")
        print(f"  images per shard, after (plan):  {dealt}  max/mean {balance(dealt):.2f}")
        done = sum(r["anonymized"] for r in reports)
        print(f"  exact: {sum(dealt)} discovered = {files} files, {done} anonymized")


def scale(n: int, laptop: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        make_series(tmp / "corpus", [50] * (n // 50))
        floor = _header_floor(sorted((tmp / "corpus").rglob("*.dcm"))[:2000])
        parallelism = max(1, n // 1000)  # shards of about 1,000 images
        plan, wall, plan_rss = pod("plan", tmp, min(parallelism, 64))
        shards = plan["shards"]
        _, _, shard_rss = pod("process", tmp, min(parallelism, 64), 0, shards)
        line = (
            f"files={n}: plan pass {wall:6.1f}s ({wall * 10_000 / n:5.1f}s per 10k files;"
            f" reading the headers alone in one process {floor:5.1f}s per 10k),"
            f" {plan_rss}; a pod of one shard ({n // shards} images) {shard_rss}"
        )
        if laptop:
            shutil.rmtree(tmp / "work", ignore_errors=True)
            sendit = Path(sys.executable).with_name("sendit")
            out = ("-o", str(tmp / "out"), "--report", str(tmp / "report.json"))
            proc = psutil.Popen(
                [sendit, "-q", "run", str(tmp / "corpus"), *out],
                env={**os.environ, "SENDIT_PSEUDONYM_KEY": KEY},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            peak = _sample(proc)
            if proc.wait() != 0:
                raise SystemExit(f"sendit run failed ({proc.returncode})")
            r = json.loads((tmp / "report.json").read_text())
            line += (
                f"; `sendit run` end to end {peak}, {r['header_reads']} header reads,"
                f" {r['discovered']} discovered, {r['anonymized']} anonymized, {r['sent']} sent"
            )
        print(line + " (target < 150 MB)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, action="append", default=[])
    parser.add_argument("--pods", type=int, default=4, help="0: no skewed-corpus figures")
    parser.add_argument(
        "--laptop-files",
        type=int,
        default=1000,
        help="`sendit run` end to end up to this many files (it de-identifies every one)",
    )
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stage, tmp, parallelism, index, count = args.child
        child(stage, Path(tmp), int(parallelism), int(index), int(count))
        return
    print(f"cpus={len(os.sched_getaffinity(0))}")
    if args.pods:
        skewed(args.pods)
    sizes = sorted(args.files or [1000, 20000, 100000])
    for n in sizes:
        scale(n, laptop=n <= args.laptop_files)


if __name__ == "__main__":
    main()
