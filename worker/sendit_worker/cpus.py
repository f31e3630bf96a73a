"""How many CPUs this process may use: a light module, imported by the CLI's help text."""

from __future__ import annotations

import os
from pathlib import Path


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup CPU quota."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cpus
