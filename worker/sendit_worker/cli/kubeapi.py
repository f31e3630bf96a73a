"""The Kubernetes API client of a worker or scan pod (its ServiceAccount) or, outside a
cluster, of the kubeconfig."""

from __future__ import annotations

from typing import Any

from sendit_api.errors import Permanent


def custom_objects_api() -> Any:
    return _client().CustomObjectsApi()


def core_api() -> Any:
    return _client().CoreV1Api()


def _client() -> Any:
    from kubernetes import client, config  # only the commands that run in a cluster need it

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError):
            raise Permanent(
                "no Kubernetes cluster configured: not in a pod, and no usable kubeconfig "
                "($KUBECONFIG or ~/.kube/config)"
            ) from None
    return client
