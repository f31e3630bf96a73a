"""The pixel path against the pixel corpus (tests/pixel_corpus.py), in one run.

Each family goes through `sendit run` as whole processes, twice: with its defaults (the clean
policy) and with `--pixels withhold` (the header path: no pixel decoded; the baseline). The
timing family runs modality by modality. Printed per family, for both policies:

- identifying text boxes left legible (pixel_corpus.read: the text's pixels still there and
  standing out), with the list, and text boxes of any kind (vendor captures: where nobody
  tuned);
- text-free images expected to be released unchanged that were altered (released showing
  other pixels, or withheld, or failed), and those released with the same pixels in other
  pixel data bytes (markers stripped, re-encoded);
- for released images that carried text, the share of the pixels outside their text boxes
  (grown by 16 px) that changed: median and worst;
- faces released, corrupted outputs (pixel_corpus.read), and outcomes other than the
  expected one (expectations are the default policy's);

then per run: CPU seconds of the process tree per image (os.wait4: the process and every
process it waited for), the default over the header path as a ratio, wall seconds, and the
peak RSS of the largest process of the tree (of the pool process, unless sendit's own main
process held more).

--rounds N runs each pair (header path, then default) N times in turn and prints medians: the
ratio is the median of each round's ratio, with its range (a shared machine's noise on a run
of a few seconds is larger than a few percent). Outcomes are those of the first round.

    python bench/pixels.py [--families large,layouts,...] [--quick] [--seed N] [--workers N]
                           [--rounds N] [--sendit PATH] [--keep DIR]

--quick makes the families small (large: 3000 x 2400 only; timing: 20 CT and 10 MR slices,
one CR, one cine, two SC): its CPU ratios carry each process's start-up, so judge them on a
full run. Families are made once and cached (see tests/pixel_corpus.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pixel_corpus
from dicomdata import KEY
from pixel_corpus import CLEANED, UNCHANGED, WITHHELD, Case

from sendit_worker.identifiers.pseudonyms import Pseudonymizer
from sendit_worker.report import FAILED_CLASSES, WITHHELD_CLASSES, reason_class

POLICIES = ("header", "default")  # --pixels withhold, then sendit's defaults
# Runs sendit and reports its exit code, the CPU seconds of its tree and the peak RSS (KiB) of
# its largest process (os.wait4: the process and every process it waited for). A process's
# peak RSS counts what its parent held when it forked, so sendit is started from this small
# launcher, never from the bench, which holds the corpus' large images.
LAUNCH = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
code = os.waitstatus_to_exitcode(status)
print(json.dumps([code, usage.ru_utime + usage.ru_stime, usage.ru_maxrss]))
"""


@dataclass(frozen=True)
class Outcome:
    status: str  # released | withheld | failed | missing
    reason: str = ""  # the reason's class (sendit_worker.report)
    path: Path | None = None


@dataclass
class Process:
    cpu: float  # seconds, user + system, of the process tree
    wall: float
    rss: int  # bytes: the largest process of the tree at its peak


@dataclass
class Tally:
    """What one policy did to one family."""

    identifying: int = 0
    identifying_left: list[str] = field(default_factory=list)
    text: int = 0
    text_left: list[str] = field(default_factory=list)
    free: int = 0
    altered: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    changes: list[tuple[float, str]] = field(default_factory=list)
    faces: int = 0
    faces_released: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    failed: int = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(pixel_corpus.FAMILY_NAMES))
    parser.add_argument("--quick", action="store_true", help="small families: a fast run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="sendit run --workers (0: its own)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each pair, in turn")
    parser.add_argument("--sendit", default=str(Path(sys.executable).with_name("sendit")))
    parser.add_argument("--keep", type=Path, help="write inputs and outputs here, and keep them")
    args = parser.parse_args()
    names = [n for n in args.families.split(",") if n]
    started = time.perf_counter()
    print(f"sendit: {args.sendit} (workers: {args.workers or 'its default'})")
    print(f"corpus: {', '.join(names)}; seed {args.seed}; {'quick' if args.quick else 'full'}")
    print("baseline: the header path (sendit run --pixels withhold) of the same sendit, same run")
    with tempfile.TemporaryDirectory(prefix="sendit-bench-pixels-") as tmp:
        root = args.keep or Path(tmp)
        processes: dict[tuple[str, str], list[Process]] = defaultdict(list)
        images: dict[str, int] = {}
        for name in names:
            cases = pixel_corpus.family(name, args.seed, args.quick)
            tallies = {policy: Tally() for policy in POLICIES}
            for group, members in _groups(name, cases).items():
                folder = root / "in" / group.replace(":", "-")
                _write(members, folder)
                images[group] = len(members)
                for first in [True] + [False] * (args.rounds - 1):
                    for policy in POLICIES:
                        out = root / policy / group.replace(":", "-")
                        report = root / f"{policy}-{group.replace(':', '-')}.json"
                        processes[group, policy].append(_sendit(args, folder, out, report, policy))
                        if not first:
                            continue
                        outcomes = _outcomes(members, folder, out, report)
                        for case in members:
                            _tally(tallies[policy], case, outcomes[case.name])
                            case.release()
            _print_family(name, len(cases), tallies)
    _print_processes(processes, images)
    print(f"\nbench took {time.perf_counter() - started:.0f} s")


def _groups(name: str, cases: list[Case]) -> dict[str, list[Case]]:
    """One run per family; the timing family one per modality (its CPU is per modality)."""
    groups: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        groups[f"{name}:{case.modality}" if name == "timing" else name].append(case)
    return groups


def _write(cases: list[Case], folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, case in enumerate(cases):
        case.write(folder / f"{i}.dcm")
        case.release()


def _sendit(
    args: argparse.Namespace, folder: Path, out: Path, report: Path, policy: str
) -> Process:
    shutil.rmtree(out, ignore_errors=True)
    command = [args.sendit, "-q", "run", str(folder), "-o", str(out), "--report", str(report)]
    if policy == "header":
        command += ["--pixels", "withhold"]
    if args.workers:
        command += ["--workers", str(args.workers)]
    env = {**os.environ, "SENDIT_PSEUDONYM_KEY": KEY.decode()}
    log = report.with_suffix(".log")
    start = time.perf_counter()
    with log.open("wb") as err:
        launched = subprocess.run(
            [sys.executable, "-c", LAUNCH, *command], env=env, stdout=subprocess.PIPE, stderr=err
        )
    wall = time.perf_counter() - start
    code, cpu, rss = json.loads(launched.stdout)
    if code not in (0, 1):  # 1: some images failed, which the figures show
        raise SystemExit(f"sendit run exited {code}: {log.read_text()[-2000:]}")
    return Process(cpu, wall, rss * 1024)


def _outcomes(cases: list[Case], folder: Path, out: Path, report: Path) -> dict[str, Outcome]:
    """Each case's outcome: its output (found by its pseudonymous SOP Instance UID), or its
    line in the report (found by its pseudonymous file reference)."""
    pseudonymizer = Pseudonymizer(KEY)
    by_uid, by_ref = {}, {}
    for i, case in enumerate(cases):
        uid = pydicom.dcmread(folder / f"{i}.dcm", stop_before_pixels=True).SOPInstanceUID
        by_uid[pseudonymizer.uid(uid)] = case.name
        by_ref[f"0:{pseudonymizer.token('file', f'{i}.dcm', 10)}"] = case.name
    outcomes = {case.name: Outcome("missing") for case in cases}
    for path in out.rglob("*.dcm"):
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        outcomes[by_uid[uid]] = Outcome("released", path=path)
    data = json.loads(report.read_text())
    for item in data["withheld_files"]:
        reason = reason_class(WITHHELD_CLASSES, item["reason"])
        outcomes[by_ref[item["ref"]]] = Outcome("withheld", reason)
    for item in data["errors"]:
        outcomes[by_ref[item["ref"]]] = Outcome(
            "failed", reason_class(FAILED_CLASSES, item["reason"])
        )
    return outcomes


def _tally(t: Tally, case: Case, outcome: Outcome) -> None:
    output = pydicom.dcmread(outcome.path) if outcome.path else None
    reading = pixel_corpus.read(case, output) if output is not None else None
    same_bytes = output is not None and output.PixelData == case.ds.PixelData
    same_pixels = same_bytes or (
        reading is not None and not reading.corrupted and _same(case, output)
    )
    if outcome.status == "released":
        actual = UNCHANGED if same_pixels else CLEANED
    else:
        actual = f"{outcome.status}:{outcome.reason}"
    expected = case.expected.outcome
    if case.expected.outcome == WITHHELD:
        expected = f"withheld:{case.expected.reason}"
    if actual != expected:
        t.mismatches.append(f"{case.name}: expected {expected}, got {actual}")
    t.failed += outcome.status in ("failed", "missing")
    positions: dict[tuple, bool] = {}  # a box on every frame of a cine counts once
    legible = set(reading.legible) if reading else set()
    for box in case.boxes:
        key = (*box[1:5], box.identifying)
        positions[key] = positions.get(key, False) or box in legible
    for (x0, y0, x1, y1, identifying), left in positions.items():
        t.text += 1
        t.identifying += identifying
        if left:
            where = f"{case.name} ({x0}, {y0}, {x1}, {y1})"
            t.text_left.append(where)
            if identifying:
                t.identifying_left.append(where)
    if case.kind == "text_free" and case.expected.outcome == UNCHANGED:
        t.free += 1
        if actual != UNCHANGED:
            t.altered.append(f"{case.name}: {actual}")
        elif not same_bytes:
            t.rewritten.append(case.name)
    if case.kind == "face":
        t.faces += 1
        if output is not None:
            t.faces_released.append(case.name)
    if reading is not None:
        if case.boxes:
            t.changes.append((reading.changed_outside, case.name))
        if reading.corrupted:
            t.corrupted.append(f"{case.name}: {reading.corrupted}")


def _print_family(name: str, count: int, tallies: dict[str, Tally]) -> None:
    h, d = tallies["header"], tallies["default"]
    print(f"\n== {name}: {count} images  (columns: header path | default)")

    def row(label: str, header: str, default: str) -> None:
        print(f"  {label:44} {header:>14} | {default}")

    row(
        "identifying text boxes left legible",
        f"{len(h.identifying_left)}/{h.identifying}",
        f"{len(d.identifying_left)}/{d.identifying}",
    )
    row(
        "text boxes of any kind left legible",
        f"{len(h.text_left)}/{h.text}",
        f"{len(d.text_left)}/{d.text}",
    )
    row(
        "text-free images altered or withheld",
        f"{len(h.altered)}/{h.free}",
        f"{len(d.altered)}/{d.free}",
    )
    row("  ... released, same pixels, other bytes", str(len(h.rewritten)), str(len(d.rewritten)))
    row("outside the text changed: median / worst", _changes(h), _changes(d))
    row(
        "faces released", f"{len(h.faces_released)}/{h.faces}", f"{len(d.faces_released)}/{d.faces}"
    )
    row("corrupted outputs", str(len(h.corrupted)), str(len(d.corrupted)))
    row("failed (not withheld)", str(h.failed), str(d.failed))
    row("outcomes other than expected (default's)", str(len(h.mismatches)), str(len(d.mismatches)))
    for policy, t in tallies.items():
        lists = [
            ("legible identifying text", t.identifying_left),
            ("text-free altered", t.altered),
            ("text-free rewritten, same pixels", t.rewritten),
            ("face released", t.faces_released),
            ("corrupted", t.corrupted),
        ]
        if policy == "default":  # the expectations are the default policy's
            lists.append(("unexpected", t.mismatches))
            lists.append(("legible text", sorted(set(t.text_left) - set(t.identifying_left))))
        for label, items in lists:
            for item in items:
                print(f"    {policy} {label}: {item}")
        worst = max(t.changes, default=None)
        if worst and worst[0] > 0:
            print(f"    {policy} most changed outside the text: {worst[1]} ({worst[0]:.1%})")


def _same(case: Case, output: pydicom.Dataset) -> bool:
    """The output shows exactly what the input showed (in other pixel data bytes)."""
    return bool((pixel_corpus.displayed(output) == pixel_corpus.displayed(case.ds)).all())


def _changes(t: Tally) -> str:
    if not t.changes:
        return "-"
    shares = [share for share, _ in t.changes]
    return f"{statistics.median(shares):.1%} / {max(shares):.1%}"


def _print_processes(
    processes: dict[tuple[str, str], list[Process]], images: dict[str, int]
) -> None:
    rounds = len(next(iter(processes.values()), []))
    print("\nCPU seconds of the process tree per image; the default over the header path")
    if rounds > 1:
        print(f"  medians of {rounds} rounds; the ratio's range in brackets; the highest peak RSS")
    print(
        f"  {'run':16} {'images':>6} {'header':>9} {'default':>9} {'ratio':>7}"
        f" {'wall h | d (s)':>16} {'peak RSS h | d (MB)':>20}"
    )
    for group, count in images.items():
        h, d = processes[group, "header"], processes[group, "default"]
        ratios = sorted(b.cpu / a.cpu for a, b in zip(h, d, strict=True))
        spread = f"  [{ratios[0]:.2f}-{ratios[-1]:.2f}]" if rounds > 1 else ""
        print(
            f"  {group:16} {count:6} {_median(h, 'cpu') / count:9.3f}"
            f" {_median(d, 'cpu') / count:9.3f} {statistics.median(ratios):6.2f}x"
            f" {_median(h, 'wall'):7.1f} | {_median(d, 'wall'):6.1f}"
            f" {max(p.rss for p in h) / 2**20:9.0f} | {max(p.rss for p in d) / 2**20:7.0f}{spread}"
        )


def _median(runs: list[Process], figure: str) -> float:
    return statistics.median(getattr(p, figure) for p in runs)


if __name__ == "__main__":
    main()
