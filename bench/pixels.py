"""The pixel path's cost and what it catches, in one run.

Images/s per modality through `sendit run`'s pipeline (one worker) with the clean policy (the
default) next to the withhold policy (header only, nothing decoded), on the burned-in corpus
of tests/pixel_corpus.py; then recall (drawn text boxes removed / drawn) and the share of
text-free images released, per modality, and whether documents were withheld.

    .venv/bin/python bench/pixels.py [--min-font N] [--seeds N]

Each modality's images are one run (its start-up and the detector's loading included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pixel_corpus
from dicomdata import KEY

from sendit_worker.identifiers.pseudonyms import Pseudonymizer
from sendit_worker.pixels import PixelPolicy
from sendit_worker.run.shard import ShardOptions, run_shard


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--min-font", type=int, default=pixel_corpus.MIN_FONT)
    parser.add_argument("--seeds", type=int, default=3, help="corpora, each its own text")
    args = parser.parse_args()
    pixel_corpus.MIN_FONT = args.min_font
    cases = [case for seed in range(args.seeds) for case in pixel_corpus.corpus(seed)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        for i, case in enumerate(cases):
            case.ds.save_as(root / "in" / f"{i}.dcm", enforce_file_format=True)
        print(f"corpus: {len(cases)} images, smallest font {args.min_font}px")
        timings = {}
        for policy in ("withhold", "clean"):
            out = root / policy
            # Per modality: each case in a folder of its own modality.
            by_modality = defaultdict(list)
            for i, case in enumerate(cases):
                by_modality[case.modality].append(i)
            for modality, indices in sorted(by_modality.items()):
                folder = root / f"in-{modality}"
                folder.mkdir(exist_ok=True)
                for i in indices:
                    target = folder / f"{i}.dcm"
                    if not target.exists():
                        target.write_bytes((root / "in" / f"{i}.dcm").read_bytes())
                start = time.perf_counter()
                run_shard(
                    ShardOptions(
                        folders=[folder],
                        output=out / modality,
                        key=KEY,
                        workers=1,
                        pixels=PixelPolicy(policy),
                    )
                )
                timings[(policy, modality)] = len(indices) / (time.perf_counter() - start)
        print(f"{'modality':10} {'header only img/s':>18} {'clean img/s':>12} {'ratio':>7}")
        for modality in sorted({m for _, m in timings}):
            header, clean = timings[("withhold", modality)], timings[("clean", modality)]
            print(f"{modality:10} {header:18.1f} {clean:12.1f} {clean / header:7.3f}")
        for policy in ("withhold", "clean"):
            _quality(cases, root / policy, policy)


def _quality(cases: list, out: Path, policy: str) -> None:
    uid = Pseudonymizer(KEY).uid
    outputs = {pydicom.dcmread(p).SOPInstanceUID: p for p in out.rglob("*.dcm")}
    drawn, removed, free, released, docs, docs_out = (defaultdict(int) for _ in range(6))
    for case in cases:
        path = outputs.get(uid(case.ds.SOPInstanceUID))
        if case.kind == "text":
            boxes = {b[1:] for b in case.boxes}  # a box drawn into every frame counts once
            drawn[case.modality] += len(boxes)
            output = pydicom.dcmread(path) if path else None
            left = {b[1:] for b in pixel_corpus.surviving(case, output)} if output else set()
            removed[case.modality] += len(boxes - left)
        elif case.kind == "text_free":
            free[case.modality] += 1
            released[case.modality] += path is not None
        else:
            docs[case.modality] += 1
            docs_out[case.modality] += path is not None
    print(f"policy {policy}: (a withheld image's boxes count as removed)")
    print(f"{'modality':10} {'recall':>14} {'text-free released':>20}")
    for modality in sorted(drawn):
        recall = f"{removed[modality]}/{drawn[modality]}"
        share = f"{released[modality]}/{free[modality]}"
        print(f"{modality:10} {recall:>14} {share:>20}")
    print(f"documents released: {sum(docs_out.values())}/{sum(docs.values())}")


if __name__ == "__main__":
    main()
