"""The operator's Kubernetes calls, on the official client (blocking: run in a thread)."""

from __future__ import annotations

from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from sendit_worker.cluster import GROUP, VERSION

MANAGER = "sendit-operator"


class Kube:
    """One pooled API client for every call (connections are reused across threads)."""

    def __init__(self) -> None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api = client.ApiClient()
        api.configuration.connection_pool_maxsize = 16
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def exists(self, namespace: str, kind: str, name: str) -> bool:
        read = {
            "Secret": self.core.read_namespaced_secret,
            "ConfigMap": self.core.read_namespaced_config_map,
            "PersistentVolumeClaim": self.core.read_namespaced_persistent_volume_claim,
        }[kind]
        try:
            read(name, namespace, _preload_content=False).release_conn()
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def create(self, obj: dict[str, Any]) -> bool:
        """Create a child; False when it already exists (names are deterministic)."""
        create = {
            "Job": self.batch.create_namespaced_job,
            "ServiceAccount": self.core.create_namespaced_service_account,
            "Role": self.rbac.create_namespaced_role,
            "RoleBinding": self.rbac.create_namespaced_role_binding,
        }[obj["kind"]]
        try:
            create(obj["metadata"]["namespace"], obj, _preload_content=False).release_conn()
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply: create or bring up to date, in one idempotent call."""
        patch = {
            "CronJob": self.batch.patch_namespaced_cron_job,
            "ServiceAccount": self.core.patch_namespaced_service_account,
            "Role": self.rbac.patch_namespaced_role,
            "RoleBinding": self.rbac.patch_namespaced_role_binding,
        }[obj["kind"]]
        patch(
            obj["metadata"]["name"],
            obj["metadata"]["namespace"],
            obj,
            field_manager=MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
            _preload_content=False,
        ).release_conn()

    def suspend_job(self, namespace: str, name: str, suspend: bool) -> None:
        self.batch.patch_namespaced_job(
            name, namespace, {"spec": {"suspend": suspend}}, _preload_content=False
        ).release_conn()

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(
                name, namespace, propagation_policy="Background", _preload_content=False
            ).release_conn()
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
            _preload_content=False,
        ).release_conn()
