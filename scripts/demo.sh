#!/usr/bin/env bash
# Try Sendit on a fresh machine: install it, make a sample of identified-looking DICOM folders
# from pydicom's bundled files (some with names burned into their pixels, one scanned letter),
# de-identify them into a local folder, and say what happened and what to try next.
# SENDIT_DEMO_SKIP_INSTALL=1 uses the .venv as it is (the test of this script does).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SENDIT_DEMO_SKIP_INSTALL:-}" ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q '.[worker]'
fi
rm -rf sample
.venv/bin/sendit sample sample/in --patients 5 --files 40
status=0
.venv/bin/sendit run sample/in --output sample/out --report sample/report.json || status=$?
echo
# What the report says, and one input beside its own output (named from the run's pseudonyms).
.venv/bin/python - sample "$status" <<'EOF'
import json
import sys
from collections import Counter
from pathlib import Path

import pydicom

from sendit_worker.identifiers.pseudonyms import Pseudonymizer, load_key

sample, status = Path(sys.argv[1]), int(sys.argv[2])
report = json.loads((sample / "report.json").read_text())
print(
    f"Cleaned: {report['anonymized']} of {report['discovered']} images are in {sample}/out, "
    "their headers de-identified (names and IDs replaced, dates shifted, UIDs remapped, "
    f"free text removed); burned-in text was blanked in the pixels of {report['pixels_cleaned']}."
)
reasons = Counter(f["reason"] for f in report["withheld_files"])
print(f"Withheld: {report['withheld']}, kept out of {sample}/out and left as they were:")
for reason, n in reasons.items():
    print(f"  {n} x {reason}")
if report["failed"] or status:
    print(f"Failed: {report['failed']} (exit code {status}; `sendit run --help` says what it means)")
print("Try next:")
print("  source .venv/bin/activate")
pseudonyms = Pseudonymizer(load_key(None, default="read")[0])
for source in sorted((sample / "in").rglob("*.dcm")):
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    study, series, sop = (pseudonyms.uid(ds[k].value) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
    output = sample / "out" / study / series / f"{sop}.dcm"
    if output.is_file():
        print(f"  diff <(pydicom show '{source}') <(pydicom show {output})  # one image, before and after")
        break
print("  sendit run --help    # your own deid recipe, the pixel policy, manifests, exit codes")
EOF
