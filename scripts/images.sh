#!/usr/bin/env bash
# Build Sendit's images for the tests on a machine without an image registry (CI):
#   sendit-worker:test and sendit-operator:test, from Dockerfile.worker and Dockerfile.operator.
#
#   bash scripts/images.sh          # engine up (if none runs), base, both images; engine stays up
#   bash scripts/images.sh stop     # stop the engine, only if this script started it
#
# - Installs Debian's docker.io (dockerd, containerd, runc) and debootstrap if missing.
# - Starts dockerd (which runs its own containerd) if no engine answers, with no bridge and no
#   iptables/NAT rules: builds use the host's network, containers run with --network host or
#   none. It stays up for the tests that run the images; `stop` (scripts/test.sh calls it at
#   exit) stops it only if it was started here (its pid is in $STATE/dockerd.pid).
# - The base is NOT the official python image (no registry here): a Debian bookworm minbase
#   made by debootstrap with python3 and this machine's CA certificates (pip in the build goes
#   through them), cached in $CACHE keyed by its inputs and imported as sendit-ci-base:<key>.
#   It is for CI only and never published: users build on the official base (README.md).
# Minutes per step go to stderr ("[images] ... in N.N min").
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${SENDIT_CACHE:-$HOME/.cache/sendit}/images"
STATE="$CACHE/engine"
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
INCLUDE=python3,python3-venv,python-is-python3,ca-certificates
WORKER_IMAGE="${SENDIT_WORKER_IMAGE:-sendit-worker:test}"
OPERATOR_IMAGE="${SENDIT_OPERATOR_IMAGE:-sendit-operator:test}"

if [ "$(id -u)" = 0 ]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "images.sh: not root and no sudo: cannot install packages or start dockerd" >&2
  exit 2
fi

t0=$(date +%s.%N)
step() {  # step NAME: print the minutes since the previous step
  local t1
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v n="$1" 'BEGIN { printf "[images] %s in %.1f min\n", n, (b - a) / 60 }' >&2
  t0=$t1
}

stop_engine() {
  local pid
  [ -f "$STATE/dockerd.pid" ] || return 0
  pid=$(cat "$STATE/dockerd.pid")
  # only that dockerd (or the sudo that runs it): a stale file's pid may be another process now
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q dockerd; then
    "${sudo[@]}" kill -TERM "$pid"
    for _ in $(seq 60); do "${sudo[@]}" kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$STATE/dockerd.pid"
}

if [ "${1:-}" = stop ]; then
  stop_engine
  exit 0
fi

# -- packages ------------------------------------------------------------------------------
need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
if ((${#need_apt[@]})); then
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi
step "packages (${need_apt[*]:-none missing})"

# -- engine --------------------------------------------------------------------------------
mkdir -p "$STATE"
if ! "${sudo[@]}" docker info >/dev/null 2>&1; then
  # dockerd starts and stops its own containerd (and runc) as its child.
  "${sudo[@]}" dockerd --bridge=none --iptables=false --ip6tables=false \
    >"$STATE/dockerd.log" 2>&1 &
  echo $! >"$STATE/dockerd.pid"
  for _ in $(seq 120); do
    "${sudo[@]}" docker info >/dev/null 2>&1 && break
    "${sudo[@]}" kill -0 "$(cat "$STATE/dockerd.pid")" 2>/dev/null || break
    sleep 0.5
  done
  if ! "${sudo[@]}" docker info >/dev/null 2>&1; then
    tail -20 "$STATE/dockerd.log" >&2
    echo "images.sh: dockerd did not start (log: $STATE/dockerd.log)" >&2
    stop_engine
    exit 1
  fi
fi
step "engine"

# -- base ----------------------------------------------------------------------------------
certs=(/usr/local/share/ca-certificates/*.crt)
[ -e "${certs[0]}" ] || certs=()
key=$( {
  echo "$SUITE $MIRROR $INCLUDE minbase $(dpkg-query -W -f='${Version}' debootstrap)"
  ((${#certs[@]})) && cat "${certs[@]}"
} | sha256sum | cut -c1-16)
BASE_IMAGE="sendit-ci-base:$key"
tarball="$CACHE/base-$key.tar"
if [ ! -s "$tarball" ]; then
  rootfs=$(mktemp -d)
  "${sudo[@]}" debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  if ((${#certs[@]})); then
    "${sudo[@]}" cp "${certs[@]}" "$rootfs/usr/local/share/ca-certificates/"
    "${sudo[@]}" chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  "${sudo[@]}" rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  "${sudo[@]}" tar -C "$rootfs" -cf "$tarball.part" .
  "${sudo[@]}" rm -rf "$rootfs"
  mv "$tarball.part" "$tarball"
fi
step "base rootfs ($tarball)"
if ! "${sudo[@]}" docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  "${sudo[@]}" docker import "$tarball" "$BASE_IMAGE" >/dev/null
fi
step "base import ($BASE_IMAGE)"

# -- images --------------------------------------------------------------------------------
build() {  # build DOCKERFILE TAG
  "${sudo[@]}" docker build --network host --build-arg PYTHON_IMAGE="$BASE_IMAGE" \
    -f "$1" -t "$2" . >"$CACHE/build-$(basename "$1").log" 2>&1 ||
    { tail -30 "$CACHE/build-$(basename "$1").log" >&2; exit 1; }
  step "build $2 ($(("$("${sudo[@]}" docker image inspect -f '{{.Size}}' "$2")" / 1000000)) MB)"
}
build Dockerfile.worker "$WORKER_IMAGE"
build Dockerfile.operator "$OPERATOR_IMAGE"
