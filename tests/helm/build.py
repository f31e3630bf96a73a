"""Build (once) and locate the ``helm`` binary the chart tests run.

The Go module next to this file pins ``helm.sh/helm/v3`` as a ``tool`` (go.mod), and
``go build helm.sh/helm/v3/cmd/helm`` inside it builds the real helm CLI from the Go
module proxy. The binary lands in a cache directory outside the repository, keyed by
the hash of ``go.mod``, ``go.sum`` and the link flags, so a second run never rebuilds::

    ${SENDIT_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/sendit}/helm/<key>/bin/helm

Pre-build from the ``tests`` directory (CI does this before pytest)::

    python -m helm.build          # builds if missing, prints the binaries' paths
    python -m helm.build --print  # only prints the paths, never builds

The sub-module ``kstatus/`` builds a small CLI around kstatus (Flux's fork of
sigs.k8s.io/cli-utils, which the proxy serves) into ``.../sendit/kstatus/<hash>/bin/kstatus``.

A cold build (modules downloaded through the proxy, then compiled) takes a few minutes
on two cores; everything after that is a cache hit.
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
PACKAGE = "helm.sh/helm/v3/cmd/helm"
# A second, tiny module: kstatus (Flux's fork of cli-utils) as a CLI, for the GitOps tests.
KSTATUS_DIR = MODULE_DIR / "kstatus"
GO_FALLBACKS = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")


class BuildError(RuntimeError):
    """The helm binary is missing and could not be built."""


def helm_version() -> str:
    """The helm.sh/helm/v3 version go.mod requires (e.g. ``v3.19.5``)."""
    text = (MODULE_DIR / "go.mod").read_text()
    match = re.search(r"^\s*(?:require\s+)?helm\.sh/helm/v3\s+(v\S+)", text, re.M)
    if not match:
        raise BuildError("go.mod does not require helm.sh/helm/v3")
    return match.group(1)


def kubernetes_minor() -> str:
    """The Kubernetes minor version helm's client-go speaks (client-go v0.34.x -> ``34``)."""
    text = (MODULE_DIR / "go.mod").read_text()
    match = re.search(r"^\s*k8s\.io/client-go\s+v0\.(\d+)\.", text, re.M)
    if not match:
        raise BuildError("go.mod does not list k8s.io/client-go")
    return match.group(1)


def ldflags() -> str:
    """``-s -w`` and the stamps helm's Makefile sets: its own version (``helm version``) and
    the Kubernetes version `helm template` and `helm lint` assume without a cluster (else
    v1.20, older than the chart's kubeVersion)."""
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={helm_version()}"]
    for pkg in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={kubernetes_minor()}"]
    return " ".join(flags)


def cache_key(module_dir: Path = MODULE_DIR, flags: str | None = None) -> str:
    """sha256 over the link flags, go.mod, go.sum and the module's own Go sources."""
    digest = hashlib.sha256()
    digest.update((ldflags() if flags is None else flags).encode() + b"\0")
    files = [module_dir / "go.mod", module_dir / "go.sum", *sorted(module_dir.glob("*.go"))]
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def cache_root() -> Path:
    explicit = os.environ.get("SENDIT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sendit"


def binary() -> Path:
    return cache_root() / "helm" / cache_key() / "bin" / "helm"


def kstatus_binary() -> Path:
    return cache_root() / "kstatus" / cache_key(KSTATUS_DIR, "-s -w") / "bin" / "kstatus"


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
    """Return the path of the helm binary, building it if it is missing.

    Raises BuildError with the tail of the Go output when the build fails.
    """
    return _build(binary(), MODULE_DIR, PACKAGE, ldflags(), verbose)


def ensure_kstatus(*, verbose: bool = True) -> Path:
    """Return the path of the kstatus CLI (tests/helm/kstatus), building it if missing."""
    return _build(kstatus_binary(), KSTATUS_DIR, ".", "-s -w", verbose)


def _build(target: Path, module_dir: Path, package: str, flags: str, verbose: bool) -> Path:
    if os.access(target, os.X_OK):
        return target
    key_dir = target.parent.parent
    with _lock(key_dir / "build.lock"):
        if os.access(target, os.X_OK):  # another process built it meanwhile
            return target
        go = find_go()
        staging = key_dir / f"bin.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        name = target.name
        env = dict(os.environ)
        env.setdefault("CGO_ENABLED", "0")
        goflags = env.get("GOFLAGS", "")
        if "-p=" not in goflags:
            goflags = f"{goflags} -p={os.cpu_count() or 2}".strip()
        if "-buildvcs" not in goflags:
            goflags += " -buildvcs=false"
        if "-mod=" not in goflags:
            goflags += " -mod=readonly"  # go.sum is committed: never rewrite it here
        env["GOFLAGS"] = goflags
        env.setdefault("GOTOOLCHAIN", "local")
        cmd = [go, "build", "-trimpath", f"-ldflags={flags}", "-o", str(staging / name), package]
        log_path = key_dir / "build.log"
        if verbose:
            print(
                f"{name}: building {package} in {module_dir} into {target}\n"
                f"{name}: {' '.join(cmd)} (log: {log_path}); the first build takes minutes",
                file=sys.stderr,
                flush=True,
            )
        started = time.monotonic()
        with open(log_path, "w") as log:
            proc = subprocess.run(
                cmd, cwd=module_dir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        elapsed = time.monotonic() - started
        if proc.returncode != 0 or not os.access(staging / name, os.X_OK):
            shutil.rmtree(staging, ignore_errors=True)
            tail = log_path.read_text(errors="replace")[-4000:]
            raise BuildError(
                f"`{' '.join(cmd)}` in {module_dir} exited {proc.returncode} after "
                f"{elapsed:.0f}s; log {log_path}:\n{tail}"
            )
        shutil.rmtree(target.parent, ignore_errors=True)
        staging.rename(target.parent)
        if verbose:
            print(f"{name}: built in {elapsed:.0f}s", file=sys.stderr, flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helm.build", description=__doc__)
    parser.add_argument("--print", action="store_true", help="print the path, do not build")
    args = parser.parse_args(argv)
    if args.print:
        print(binary())
        print(kstatus_binary())
        return 0 if all(os.access(p, os.X_OK) for p in (binary(), kstatus_binary())) else 1
    try:
        print(ensure_built())
        print(ensure_kstatus())
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
