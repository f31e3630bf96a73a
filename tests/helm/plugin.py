"""pytest fixtures for the Go-built helm (loaded via ``pytest_plugins``).

``helm_bin`` (session): the binary ``build.py`` builds (or finds cached); FAILS the tests when it
cannot be built, never skips. ``helm`` (session): ``helm(*args, check=True, kubeconfig=None)``
runs it with its own cache, config and data folders, raising with its stderr on failure.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    from helm import build

    try:
        return build.ensure_built()
    except build.BuildError as exc:
        pytest.fail(f"cannot build helm: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def helm(helm_bin, tmp_path_factory):
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str, check: bool = True, kubeconfig=None) -> subprocess.CompletedProcess:
        cmd = [str(helm_bin), *args]
        if kubeconfig:
            cmd.append(f"--kubeconfig={kubeconfig}")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    return run
