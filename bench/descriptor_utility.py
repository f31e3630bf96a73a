"""What Clean Descriptors and default deny cost in utility: on realistic descriptions, and on
pydicom's bundled files.

    python bench/descriptor_utility.py [--before OTHER/.venv/bin/sendit [--after sendit]]

First the share of words kept when the realistic study, series and protocol descriptions of
bench/descriptions.txt (their sources are named there) are cleaned as a kept descriptor is (the
scanner's patterns, then the vocabulary), for the lines the vocabulary was tuned on and for the
held-out ones, with before/after pairs. Then, with --before, runs both `sendit` commands with one
key over the same copy of the bundled files and compares the outputs (named by the same new
UIDs): how many description attributes were kept, changed or removed, with a few before/after
pairs. Prints counts and examples; PHI-free by nature (the lists and bundled files are test data).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pydicom
import pydicom.data

from sendit_worker.header.scanner import NO_SPACES, Scanner
from sendit_worker.header.vocabulary import vocabulary

DESCRIPTORS = ("StudyDescription", "SeriesDescription", "ProtocolName", "ImageComments")
DESCRIPTIONS = Path(__file__).with_name("descriptions.txt")
HELD_OUT = "# Held out"
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> Counter[str]:
    """The words of a text: runs of letters and digits; in a script without spaces, each
    character."""
    found: Counter[str] = Counter()
    for token in _WORD.findall(text):
        found.update(token if NO_SPACES.search(token) else [token])
    return found


def described() -> None:
    """Share of the words of bench/descriptions.txt a kept descriptor keeps."""
    sections: dict[str, list[str]] = {"tuned on": [], "held out": []}
    section = sections["tuned on"]
    for line in DESCRIPTIONS.read_text().splitlines():
        if line.startswith(HELD_OUT):
            section = sections["held out"]
        elif line.strip() and not line.startswith("#"):
            section.append(line.strip())
    scanner, vocab = Scanner(), vocabulary()  # no file's own values: the patterns only
    pairs = []
    for name, lines in sections.items():
        kept = total = 0
        for line in lines:
            after = vocab.clean(scanner.clean(line))
            before = words(line)
            total += before.total()
            kept += (before & words(after)).total()
            if after != line:
                pairs.append((line, after))
        print(f"descriptions {name}: {len(lines)}, words kept {kept}/{total} = {kept / total:.1%}")
    for line, after in pairs[:12]:
        print(f"  {line!r} -> {after!r}")


def texts(out: Path) -> dict[tuple[str, str], str]:
    found = {}
    for path in out.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for elem in ds:
            if elem.VR in ("LO", "SH", "ST", "LT") and elem.value:
                found[(path.name, elem.keyword or str(elem.tag))] = str(elem.value)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a sendit command to compare with, on bundled files")
    parser.add_argument("--after", default=shutil.which("sendit") or "sendit")
    args = parser.parse_args()
    described()
    if not args.before:
        return
    env = {**os.environ, "SENDIT_PSEUDONYM_KEY": "descriptor-utility-key-0123456789"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = Path(pydicom.data.__file__).parent / "test_files"
        shutil.copytree(src, root / "in", ignore=shutil.ignore_patterns("*.py", "*.json"))
        outputs = {}
        for name, sendit in (("before", args.before), ("after", args.after)):
            out = root / name
            cmd = [sendit, "-q", "run", str(root / "in"), "--output", str(out), "--workers", "1"]
            subprocess.run(cmd, env=env, capture_output=True, timeout=600)
            outputs[name] = texts(out)
        before, after = outputs["before"], outputs["after"]
        common = {f for f, _ in before} & {f for f, _ in after}
        released = {n: len({f for f, _ in t}) for n, t in outputs.items()}
        print(
            f"files with text released: before {released['before']}, after {released['after']};"
            f" by both {len(common)}"
        )
        b = {k: v for k, v in before.items() if k[0] in common}
        a = {k: v for k, v in after.items() if k[0] in common}
        kept = [k for k in b if a.get(k) == b[k]]
        changed = [k for k in b if k in a and a[k] != b[k]]
        removed = [k for k in b if k not in a]
        print(
            f"text values before: {len(b)}; kept as they were {len(kept)}, changed "
            f"{len(changed)}, removed {len(removed)}"
        )
        for keyword in DESCRIPTORS:
            ks = [k for k in b if k[1] == keyword]
            same = sum(a.get(k) == b[k] for k in ks)
            print(f"  {keyword}: {len(ks)} before, {same} unchanged after")
        removed_kinds = sorted({k[1] for k in removed})
        print(f"attributes removed: {', '.join(removed_kinds)}")
        for k in changed[:6]:
            print(f"  {k[1]}: {b[k]!r} -> {a[k]!r}")


if __name__ == "__main__":
    main()
