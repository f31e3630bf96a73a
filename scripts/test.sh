#!/usr/bin/env bash
# Run Sendit's checks and tests on a fresh machine: installs what they need, then runs them.
# System packages (Debian): dciodvfy (dicom3tools) and dcmtk validate outputs; Orthanc with its
# DICOMweb plugin is the PACS the tests deliver to; Java runs the Pub/Sub emulator; Chromium is
# the browser Playwright drives at the status page. Python packages go into .venv. The
# Kubernetes control plane used by the operator tests is built from Go modules by the test
# setup itself (cached outside the tree). scripts/images.sh builds the two images (and starts a
# Docker engine if none runs: stopped again at exit); the tests run them, and the cluster
# tests' node stand-in runs every pod in its image.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dciodvfy >/dev/null || need_apt+=(dicom3tools)
command -v dcmdump >/dev/null || need_apt+=(dcmtk)
command -v Orthanc >/dev/null || need_apt+=(orthanc)  # a real PACS for the pacs destination
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need_apt+=(orthanc-dicomweb)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)  # the status page's browser test (Playwright)
# Fonts the pixel corpus (tests/pixel_scenes.py) burns its text in.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
[ -e /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf ] || need_apt+=(fonts-liberation)
# opencv-python, which the pixel text detector pulls, loads libGL and glib.
ldconfig -p | grep -q 'libGL.so.1 ' || need_apt+=(libgl1)
ldconfig -p | grep -q 'libglib-2.0.so.0 ' || need_apt+=(libglib2.0-0)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"

ruff check .
ruff format --check .
# Go binaries the tests run (cached in ~/.cache/sendit by a hash of their sources; minutes on a
# fresh machine, instant afterwards): a Kubernetes control plane, helm and kstatus.
(cd tests && python -m controlplane.build && python -m helm.build)
if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
if ! $sudo docker info >/dev/null 2>&1; then  # the engine images.sh starts is stopped at exit
  trap 'bash scripts/images.sh stop' EXIT
fi
bash scripts/images.sh
python -m pytest "$@"
