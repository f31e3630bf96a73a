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
import re
import sys
from pathlib import Path

import gobuild
from gobuild import BuildError

MODULE_DIR = Path(__file__).resolve().parent
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")


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
    """Over go.mod, go.sum, every Go source under cmd/ and the link flags (so changing the
    version stamps rebuilds)."""
    return gobuild.cache_key(MODULE_DIR, sorted((MODULE_DIR / "cmd").rglob("*.go")), ldflags())


def bin_dir() -> Path:
    return gobuild.cache_root() / "controlplane" / cache_key() / "bin"


def missing_binaries(directory: Path | None = None) -> list[str]:
    return gobuild.missing(directory or bin_dir(), BINARIES)


def ensure_built(*, verbose: bool = True) -> Path:
    """Return the bin dir holding all three binaries, building them if any is missing.

    Raises BuildError with the tail of the Go output when the build fails.
    """
    return gobuild.ensure(
        bin_dir(), BINARIES, MODULE_DIR, ["./cmd/..."], ldflags(), verbose=verbose
    )


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
