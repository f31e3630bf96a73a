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
import os
import re
import sys
from pathlib import Path

import gobuild
from gobuild import BuildError

MODULE_DIR = Path(__file__).resolve().parent
PACKAGE = "helm.sh/helm/v3/cmd/helm"
# A second, tiny module: kstatus (Flux's fork of cli-utils) as a CLI, for the GitOps tests.
KSTATUS_DIR = MODULE_DIR / "kstatus"


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
    """Over the link flags, go.mod, go.sum and the module's own Go sources."""
    flags = ldflags() if flags is None else flags
    return gobuild.cache_key(module_dir, sorted(module_dir.glob("*.go")), flags)


def binary() -> Path:
    return gobuild.cache_root() / "helm" / cache_key() / "bin" / "helm"


def kstatus_binary() -> Path:
    return gobuild.cache_root() / "kstatus" / cache_key(KSTATUS_DIR, "-s -w") / "bin" / "kstatus"


def ensure_built(*, verbose: bool = True) -> Path:
    """Return the path of the helm binary, building it if it is missing.

    Raises BuildError with the tail of the Go output when the build fails.
    """
    target = binary()
    gobuild.ensure(target.parent, ("helm",), MODULE_DIR, [PACKAGE], ldflags(), verbose=verbose)
    return target


def ensure_kstatus(*, verbose: bool = True) -> Path:
    """Return the path of the kstatus CLI (tests/helm/kstatus), building it if missing."""
    target = kstatus_binary()
    gobuild.ensure(target.parent, ("kstatus",), KSTATUS_DIR, ["."], "-s -w", verbose=verbose)
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
