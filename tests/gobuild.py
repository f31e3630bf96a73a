"""Build Go binaries from the pinned modules under tests/ once, into a cache keyed by hash.

The control plane (tests/controlplane) and helm with kstatus (tests/helm) are built from the
Go module proxy the first time (minutes), then found by the hash of what they are built from:

    ${SENDIT_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/sendit}/<name>/<key>/bin/
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

GO_FALLBACKS = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")


class BuildError(RuntimeError):
    """Binaries are missing and could not be built."""


def cache_root() -> Path:
    explicit = os.environ.get("SENDIT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sendit"


def cache_key(module_dir: Path, sources: Iterable[Path], flags: str) -> str:
    """sha256 over the link flags, go.mod, go.sum and the given sources (path and bytes)."""
    digest = hashlib.sha256()
    digest.update(flags.encode() + b"\0")
    for path in [module_dir / "go.mod", module_dir / "go.sum", *sources]:
        digest.update(path.relative_to(module_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def missing(bin_dir: Path, names: Iterable[str]) -> list[str]:
    return [name for name in names if not os.access(bin_dir / name, os.X_OK)]


def find_go() -> str:
    found = shutil.which("go")
    if found:
        return found
    for candidate in GO_FALLBACKS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise BuildError("the Go toolchain was not found on PATH nor at " + ", ".join(GO_FALLBACKS))


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure(
    bin_dir: Path,
    names: tuple[str, ...],
    module_dir: Path,
    packages: list[str],
    flags: str,
    *,
    verbose: bool = True,
) -> Path:
    """`bin_dir` holding every binary in `names`, built by `go build packages` if any is
    missing. Safe to call from several processes: one builds, the others wait and reuse."""
    if not missing(bin_dir, names):
        return bin_dir
    key_dir = bin_dir.parent
    with _lock(key_dir / "build.lock"):
        if not missing(bin_dir, names):  # another process built them meanwhile
            return bin_dir
        staging = key_dir / f"bin.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        env = dict(os.environ)
        env.setdefault("CGO_ENABLED", "0")
        env.setdefault("GOTOOLCHAIN", "local")
        goflags = env.get("GOFLAGS", "")
        if "-p=" not in goflags:
            goflags = f"{goflags} -p={os.cpu_count() or 2}".strip()
        if "-buildvcs" not in goflags:
            goflags += " -buildvcs=false"
        if "-mod=" not in goflags:
            goflags += " -mod=readonly"  # go.sum is committed: never rewrite it here
        env["GOFLAGS"] = goflags
        cmd = [find_go(), "build", "-trimpath", f"-ldflags={flags}", "-o", f"{staging}/", *packages]
        log_path = key_dir / "build.log"
        if verbose:
            print(
                f"gobuild: building {', '.join(names)} into {bin_dir}\n"
                f"gobuild: {' '.join(cmd)} (log: {log_path}); the first build takes minutes",
                file=sys.stderr,
                flush=True,
            )
        started = time.monotonic()
        with open(log_path, "w") as log:
            proc = subprocess.run(
                cmd, cwd=module_dir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        elapsed = time.monotonic() - started
        absent = missing(staging, names)
        if proc.returncode != 0 or absent:
            shutil.rmtree(staging, ignore_errors=True)
            tail = log_path.read_text(errors="replace")[-4000:]
            raise BuildError(
                f"`{' '.join(cmd)}` in {module_dir} exited {proc.returncode} after "
                f"{elapsed:.0f}s (missing: {absent}); log {log_path}:\n{tail}"
            )
        shutil.rmtree(bin_dir, ignore_errors=True)
        staging.rename(bin_dir)
        if verbose:
            print(f"gobuild: built in {elapsed:.0f}s", file=sys.stderr, flush=True)
    return bin_dir
