"""The cascade's shadow: the text detector on every pixel beside the cascade, on the pixel corpus.

The cascade (sendit_worker.pixels: a cheap first look everywhere, the detector only where it
points) must find at least what the detector finds looking at everything. For each image of
the chosen families, in process:

- the cascade: PixelCleaner with the default policy; what it blanked (for a withheld image,
  what it found);
- the shadow: every frame's every view (as the cascade sees them: stored range, windows,
  colour) through the detector in tiles at native resolution, its detections held to the
  cascade's own rule for text (a line of aligned glyphs supports it, or the reader reads it).

Printed per family: the shadow's text regions and those the cascade missed (less than half of
the region inside what the cascade blanked), with the list; and recall against the corpus'
own text boxes (the hand-labelled vendor captures included): the share of boxes the cascade
covers and the share the shadow covers. Also the detector's work: network passes and pixels,
cascade against shadow.

    python bench/shadow.py [--families layouts,vendor,...] [--quick] [--seed N]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pixel_corpus

from sendit_worker.logs import quiet_libraries
from sendit_worker.pixels import PixelCleaner, PixelPolicy
from sendit_worker.pixels.candidates import Region, first_look
from sendit_worker.pixels.codec import CodecError, Layout, frames
from sendit_worker.pixels.search import Search, mask_of
from sendit_worker.pixels.views import display, planes, views

COVERED = 0.5  # of a region's area inside what the cascade blanked: found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    families = [n for n in pixel_corpus.FAMILY_NAMES if n != "timing"]
    parser.add_argument("--families", default=",".join(families))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    quiet_libraries()
    cleaner = PixelCleaner(PixelPolicy())
    shadow = Search(lambda: cleaner.detector, lambda: cleaner.reader)
    started = time.perf_counter()
    totals = {"regions": 0, "missed": 0}
    for name in [n for n in args.families.split(",") if n]:
        regions, missed, truth, by_cascade, by_shadow = 0, [], 0, 0, 0
        work = {"cascade": [0, 0], "shadow": [0, 0]}
        for case in pixel_corpus.family(name, args.seed, args.quick):
            ds = copy.deepcopy(case.ds)
            runs, pixels = cleaner.detector.runs, cleaner.detector.pixels
            outcome = cleaner.apply(ds)
            work["cascade"][0] += cleaner.detector.runs - runs
            work["cascade"][1] += cleaner.detector.pixels - pixels
            runs, pixels = cleaner.detector.runs, cleaner.detector.pixels
            found = _shadow(shadow, case.ds)
            work["shadow"][0] += cleaner.detector.runs - runs
            work["shadow"][1] += cleaner.detector.pixels - pixels
            if found is None or (outcome.withheld and not outcome.blanked):
                case.release()  # no pixels to read, or withheld before any search (a face)
                continue
            rows, columns = int(case.ds.Rows), int(case.ds.Columns)
            blanked = mask_of(list(outcome.blanked), rows, columns)
            shadowed = mask_of(found, rows, columns)
            regions += len(found)
            missed += [
                f"{case.name} {(r.x0, r.y0, r.x1, r.y1)}"
                for r in found
                if _share(blanked, r) < COVERED
            ]
            for box in case.boxes:
                truth += 1
                region = Region(box.x0, box.y0, box.x1, box.y1, box.y1 - box.y0)
                by_cascade += _share(blanked, region) >= COVERED
                by_shadow += _share(shadowed, region) >= COVERED
            case.release()
        totals["regions"] += regions
        totals["missed"] += len(missed)
        print(f"\n== {name}")
        print(f"  shadow's text regions missed by the cascade   {len(missed)}/{regions}")
        for line in missed:
            print(f"    missed: {line}")
        if truth:
            print(
                f"  corpus text boxes covered: cascade {by_cascade}/{truth}"
                f" ({by_cascade / truth:.0%}), shadow {by_shadow}/{truth} ({by_shadow / truth:.0%})"
            )
        for who, (runs, pixels) in work.items():
            print(f"  detector work, {who:8s}{runs:8d} passes {pixels / 1e6:10.1f} M pixels")
    print(f"\nmissed in all: {totals['missed']}/{totals['regions']}")
    print(f"bench took {time.perf_counter() - started:.0f} s")


def _shadow(search: Search, ds) -> list[Region] | None:
    """What the detector, looking at every pixel of every frame's views, finds as text; None
    for an image without integer pixels the codec reads."""
    try:
        layout = Layout.of(ds)
        shown = display(ds, layout)
        found: list[Region] = []
        for frame in frames(ds, layout):
            for view in views(frame, shown):
                rows, columns = view.shape[:2]
                lines = list(first_look(planes(view)[0]).lines)
                whole = [Region(0, 0, columns, rows, rows)]
                found.extend(search.text(view, whole, lines).regions)
        return found
    except CodecError:
        return None


def _share(mask: np.ndarray, r: Region) -> float:
    part = mask[r.y0 : r.y1, r.x0 : r.x1]
    return float(part.mean()) if part.size else 1.0


if __name__ == "__main__":
    main()
