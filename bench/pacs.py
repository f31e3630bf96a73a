"""Delivery to a PACS (a real Orthanc on 127.0.0.1) against the raw rates of the same files.

    python bench/pacs.py [--files 400] [--concurrency 4]

Makes a sample, de-identifies it with the real pipeline, then times, in one run and on fresh
Orthanc storage each: dcmtk's `storescu` of the files (one association), plain STOW-RS of the
files with dicomweb-client (one request per 50), and Sendit's delivery over DIMSE (counting
C-STORE statuses, then storage commitment reports) and over DICOMweb (STOW-RS and a QIDO-RS
check per series), series in parallel, every image confirmed and recorded. Prints images/s
and MB/s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient

from sendit_api.spec import Destinations, DicomWeb, Dimse, Pacs, StorageCommitment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from emulators import Orthanc

from sendit_worker.cli.sample import make_sample
from sendit_worker.destinations.deliver import Delivery
from sendit_worker.report import Report
from sendit_worker.run.shard import ShardOptions, run_shard


def line(label: str, seconds: float, count: int, size: int) -> str:
    return f"  {label:28} {count / seconds:8.1f} images/s {size / seconds / 1e6:7.1f} MB/s"


def deliver(root: Path, series: list, pacs: Pacs) -> float:
    dests = Destinations(local=None, gcs=None, bigquery=None, pubsub=None, pacs=pacs)
    delivery = Delivery("bench", dests, root, keep_files=True)
    started = time.perf_counter()
    for images in series:
        delivery.submit(images)
    delivery.finish(Report())
    elapsed = time.perf_counter() - started
    delivery.close()
    (root / ".sendit" / "ledger.jsonl").unlink(missing_ok=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pacs-bench-") as tmp:
        root = Path(tmp)
        make_sample(root / "src", patients=4, files=args.files)
        series: list = []
        key = b"pacs-benchmark-key-0123456789abcdef"
        options = ShardOptions(folders=[root / "src"], output=root / "out", key=key)
        options.on_series = lambda done: series.append(done.images(root / "out"))
        run_shard(options)
        series = [s for s in series if s]
        files = [i.path for s in series for i in s]
        size = sum(p.stat().st_size for p in files)
        print(f"{len(files)} images, {size / 1e6:.1f} MB, {len(series)} series")
        runs = {
            "storescu (dcmtk, raw)": lambda pacs: _storescu(pacs, files),
            "STOW-RS (dicomweb-client)": lambda pacs: _stow(pacs, files),
            "sendit DIMSE (C-STORE status)": lambda pacs: deliver(
                root / "out", series, Pacs(None, _dimse(pacs, "disabled"), None, args.concurrency)
            ),
            "sendit DIMSE + commitment": lambda pacs: deliver(
                root / "out", series, Pacs(None, _dimse(pacs, "required"), None, args.concurrency)
            ),
            "sendit DICOMweb": lambda pacs: deliver(
                root / "out", series, Pacs(DicomWeb(pacs.dicomweb), None, None, args.concurrency)
            ),
        }
        for label, timed in runs.items():
            data = root / f"orthanc-{len(label)}-{hash(label) & 0xFFFF}"
            data.mkdir()
            pacs = Orthanc(data)
            try:
                seconds = timed(pacs)
                held = len(pacs.instances())
            finally:
                pacs.proc.terminate()
                pacs.proc.wait(30)
            print(line(label, seconds, len(files), size) + f"  (Orthanc holds {held})")


def _dimse(pacs: Orthanc, commitment: str) -> Dimse:
    """Orthanc sends its commitment reports to SENDIT at 127.0.0.1:commitment_port."""
    listener = StorageCommitment(commitment, pacs.commitment_port, "127.0.0.1", 60.0)
    return Dimse("127.0.0.1", pacs.dicom, pacs.AE, "SENDIT", False, listener)


def _storescu(pacs: Orthanc, files: list[Path]) -> float:
    started = time.perf_counter()
    # Its default proposals (uncompressed syntaxes): compressed files are refused, so the
    # line says how many Orthanc holds.
    subprocess.run(
        ["storescu", "-aec", pacs.AE, "127.0.0.1", str(pacs.dicom), *map(str, files)],
        check=False,
        capture_output=True,
    )
    return time.perf_counter() - started


def _stow(pacs: Orthanc, files: list[Path]) -> float:
    client = DICOMwebClient(pacs.dicomweb)
    started = time.perf_counter()
    for start in range(0, len(files), 50):
        client.store_instances([pydicom.dcmread(p) for p in files[start : start + 50]])
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
