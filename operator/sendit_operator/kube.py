"""The operator's Kubernetes calls, on the official client (blocking: run in a thread).

Responses are not decoded into the client's models (`_preload_content=False`: the operator
needs none of them), but each is read to its end before its connection goes back to the pool:
a connection returned with an unread body would hand that body to the next request as its
status line.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from sendit_api.names import GROUP, VERSION

MANAGER = "sendit-operator"


def _done(response: Any) -> None:
    """Read what is left of a raw response and give its connection back to the pool."""
    response.drain_conn()
    response.release_conn()


def describe(exc: BaseException) -> str:
    """An API error, for a log line: its kind and HTTP status, never its body (which can echo
    a batch's spec, folder names included)."""
    if isinstance(exc, ApiException):
        what = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            details = json.loads(exc.body).get("details") or {}  # Kubernetes names only
            what = f" on {details.get('kind', '?')} {details.get('name', '?')}"
        return f"{exc.status} {exc.reason}{what}"
    return type(exc).__name__


class Kube:
    """One pooled API client for every call (connections are reused across threads)."""

    def __init__(self) -> None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        settings = client.Configuration.get_default_copy()
        settings.connection_pool_maxsize = 32  # read when the pool is made: set it first
        api = client.ApiClient(settings)
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
            _done(read(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status in (403, 404):
                return False  # forbidden is as unusable as missing: the batch must say so
            raise
        return True

    def create(self, obj: dict[str, Any]) -> bool:
        """Create a child; False when it already exists (names are deterministic)."""
        create = {
            "Job": self.batch.create_namespaced_job,
            "ServiceAccount": self.core.create_namespaced_service_account,
            "Service": self.core.create_namespaced_service,
            "Role": self.rbac.create_namespaced_role,
            "RoleBinding": self.rbac.create_namespaced_role_binding,
        }[obj["kind"]]
        try:
            _done(create(obj["metadata"]["namespace"], obj, _preload_content=False))
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
        _done(
            patch(
                obj["metadata"]["name"],
                obj["metadata"]["namespace"],
                obj,
                field_manager=MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
            )
        )

    def suspend_job(self, namespace: str, name: str, suspend: bool) -> None:
        _done(
            self.batch.patch_namespaced_job(
                name, namespace, {"spec": {"suspend": suspend}}, _preload_content=False
            )
        )

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            _done(
                self.batch.delete_namespaced_job(
                    name, namespace, propagation_policy="Background", _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        _done(
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"status": status},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        )

    def batch_events(self, namespaces: list[str]) -> list[dict[str, Any]]:
        """The Events of SenditBatches in these namespaces (empty: every namespace)."""
        selector = "involvedObject.kind=SenditBatch"
        calls = [
            lambda ns=ns: self.core.list_namespaced_event(
                ns, field_selector=selector, _preload_content=False
            )
            for ns in namespaces
        ] or [
            lambda: self.core.list_event_for_all_namespaces(
                field_selector=selector, _preload_content=False
            )
        ]
        events: list[dict[str, Any]] = []
        for call in calls:
            response = call()
            try:
                events += json.loads(response.data).get("items") or []
            finally:
                _done(response)
        return events
