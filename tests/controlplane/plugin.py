"""pytest fixtures for the real test control plane (loaded via ``pytest_plugins``).

``kube_cluster`` (session): etcd + kube-apiserver (RBAC on) + kube-controller-
manager built from Go modules; attributes ``kubeconfig``, ``server``,
``ca_file``; methods ``kubectl(*args, check=True, input=None)``,
``token_kubeconfig(namespace, service_account)``, ``api_client()``,
``restart_apiserver(down)`` (SIGKILL, then the same port and etcd).

``fake_node`` (session): the node TEST DOUBLE of ``fakenode.py`` (binds Pods to
``sendit-fake-node`` and runs them in their images through the Docker engine that
``scripts/images.sh`` starts, or as local processes with ``SENDIT_FAKENODE=process``);
methods ``map_claim(namespace, claim, local_path)``, ``add_claim(...)`` (the claim made
in the API too) and ``logs(namespace, pod_name)``.

The binaries are built on first use (see ``build.py``); if they cannot be
built, the fixtures FAIL with the build error -- they never skip.

Environment knobs: ``SENDIT_FAKENODE=process`` (the fake node's local-process mode),
``SENDIT_CACHE_DIR`` (binary cache root),
``SENDIT_CONTROLPLANE_KEEP=1`` (keep the temp dirs with all logs after the
session, and print where they are).
"""

from __future__ import annotations

import os
import sys

import pytest

from . import build

# harness/fakenode import `cryptography` and `kubernetes`; they are imported in the
# fixtures so that loading this plugin never breaks tests that do not use them.


@pytest.fixture(scope="session")
def controlplane_bin_dir():
    """The directory holding etcd, kube-apiserver and kube-controller-manager."""
    try:
        return build.ensure_built()
    except build.BuildError as exc:
        pytest.fail(f"cannot build the test control plane: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def kube_cluster(controlplane_bin_dir):
    from .harness import ControlPlane, ControlPlaneError

    keep = os.environ.get("SENDIT_CONTROLPLANE_KEEP") == "1"
    # Free ports are picked by binding to port 0 and closing, so another process
    # can grab one before our server binds it: one retry covers that race.
    for attempt in (1, 2):
        cluster = ControlPlane(bin_dir=controlplane_bin_dir, keep=keep)
        try:
            cluster.start()
            break
        except ControlPlaneError as exc:
            if attempt == 2:
                pytest.fail(f"the test control plane did not start: {exc}", pytrace=False)
            print(f"\ncontrolplane: start failed, retrying once: {exc}", file=sys.stderr)
    print(
        f"\ncontrolplane: ready in {cluster.ready_seconds:.1f}s at {cluster.server} "
        f"(workdir {cluster.workdir})",
        file=sys.stderr,
    )
    try:
        yield cluster
    finally:
        cluster.stop()
        if keep:
            print(f"\ncontrolplane: kept {cluster.workdir}", file=sys.stderr)


@pytest.fixture(scope="session")
def fake_node(kube_cluster, tmp_path_factory):
    from .fakenode import FakeNode

    node = FakeNode(kube_cluster, workdir=tmp_path_factory.mktemp("fakenode"))
    try:
        node.start()
    except RuntimeError as exc:  # no engine in container mode
        pytest.fail(str(exc), pytrace=False)
    try:
        yield node
    finally:
        node.stop()
        if node.errors:
            print("\nfake node errors:\n  " + "\n  ".join(node.errors), file=sys.stderr)
