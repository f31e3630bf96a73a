"""Build (once) and locate the test control plane's binaries.

The Go module next to this file pins k8s.io/kubernetes and builds three tiny
``main`` packages: ``etcd``, ``kube-apiserver`` and ``kube-controller-manager``.
They are built into a cache directory outside the repository, keyed by the hash
of ``go.mod``, ``go.sum`` and the ``cmd`` sources, so a second run with the same
pins never rebuilds::

    ${SENDIT_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/sendit}/controlplane/<key>/bin

Pre-build from the ``tests`` directory (CI does this before pytest)::

    python -m controlplane.build          # builds if missing, prints the bin dir
    python -m controlplane.build --print  # only prints the bin dir, never builds

The first build on a fresh machine downloads the modules through the Go module
proxy and compiles for several minutes; everything after that is a cache hit.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
GO_FALLBACKS = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")


class BuildError(RuntimeError):
    """The control-plane binaries are missing and could not be built."""


def kubernetes_version() -> str:
    """The k8s.io/kubernetes version that go.mod requires (e.g. ``v1.33.13``)."""
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)", _read("go.mod"), re.M)
    if not match:
        raise BuildError("go.mod does not require k8s.io/kubernetes")
    return match.group(1)


def _read(name: str) -> str:
    return (MODULE_DIR / name).read_text()


def ldflags() -> str:
    """``-s -w`` plus the version stamps hack/lib/version.sh would set.

    Without them the server reports ``v0.0.0-master+$Format:%H$``, which kubectl
    refuses to parse (``kubectl version`` exits 1).
    """
    version = kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{key}={value}" for key, value in stamps.items()]
    return " ".join(flags)


def cache_key() -> str:
    """sha256 over go.mod, go.sum, every Go source under cmd/ (path + bytes) and the
    link flags (so changing the version stamps rebuilds)."""
    digest = hashlib.sha256()
    digest.update(ldflags().encode() + b"\0")
    files = [MODULE_DIR / "go.mod", MODULE_DIR / "go.sum"]
    files += sorted((MODULE_DIR / "cmd").rglob("*.go"))
    for path in files:
        digest.update(path.relative_to(MODULE_DIR).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def cache_root() -> Path:
    explicit = os.environ.get("SENDIT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sendit"


def bin_dir() -> Path:
    return cache_root() / "controlplane" / cache_key() / "bin"


def missing_binaries(directory: Path | None = None) -> list[str]:
    directory = directory or bin_dir()
    return [name for name in BINARIES if not os.access(directory / name, os.X_OK)]


def find_go() -> str:
    found = shutil.which("go")
    if found:
        return found
    for candidate in GO_FALLBACKS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise BuildError("the Go toolchain was not found on PATH nor at " + ", ".join(GO_FALLBACKS))


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_built(*, verbose: bool = True) -> Path:
    """Return the bin dir holding all three binaries, building them if any is missing.

    Raises BuildError with the tail of the Go output when the build fails.
    """
    target = bin_dir()
    if not missing_binaries(target):
        return target
    with _lock(target.parent / "build.lock"):
        if not missing_binaries(target):  # another process built it meanwhile
            return target
        go = find_go()
        staging = target.parent / f"bin.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        env = dict(os.environ)
        env.setdefault("CGO_ENABLED", "0")
        goflags = env.get("GOFLAGS", "")
        if "-p=" not in goflags:
            goflags = f"{goflags} -p={os.cpu_count() or 2}".strip()
        if "-buildvcs" not in goflags:
            goflags += " -buildvcs=false"
        env["GOFLAGS"] = goflags
        env.setdefault("GOTOOLCHAIN", "local")
        cmd = [
            go,
            "build",
            "-trimpath",
            f"-ldflags={ldflags()}",
            "-o",
            str(staging) + "/",
            "./cmd/...",
        ]
        log_path = target.parent / "build.log"
        if verbose:
            print(
                f"controlplane: building {', '.join(BINARIES)} into {target}\n"
                f"controlplane: {' '.join(cmd)} (log: {log_path}); the first build takes minutes",
                file=sys.stderr,
                flush=True,
            )
        started = time.monotonic()
        with open(log_path, "w") as log:
            proc = subprocess.run(
                cmd, cwd=MODULE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = log_path.read_text(errors="replace")[-4000:]
            raise BuildError(
                f"`{' '.join(cmd)}` in {MODULE_DIR} exited {proc.returncode} after "
                f"{elapsed:.0f}s; log {log_path}:\n{tail}"
            )
        absent = missing_binaries(staging)
        if absent:
            raise BuildError(f"go build succeeded but did not produce {absent} in {staging}")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        if verbose:
            print(f"controlplane: built in {elapsed:.0f}s", file=sys.stderr, flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane.build", description=__doc__)
    parser.add_argument("--print", action="store_true", help="print the bin dir, do not build")
    args = parser.parse_args(argv)
    if args.print:
        print(bin_dir())
        return 0 if not missing_binaries() else 1
    try:
        print(ensure_built())
    except BuildError as exc:
        print(f"controlplane: build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
