#!/usr/bin/env bash
# Try Sendit on a fresh machine: install it, make a sample of identified-looking DICOM folders
# from pydicom's bundled files, and de-identify them into a local folder.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q '.[worker]'
rm -rf sample
.venv/bin/sendit sample sample/in --patients 5 --files 40
.venv/bin/sendit run sample/in --output sample/out --report sample/report.json
echo "de-identified files: $(find sample/out -name '*.dcm' | wc -l) under sample/out; report: sample/report.json"
