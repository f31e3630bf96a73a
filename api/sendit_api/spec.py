"""A SenditBatch parsed once into typed, frozen objects.

The classes mirror the CRD's schema field for field (snake_case for camelCase), so a value
comes from the manifest or from the schema's default and from nowhere else: no field here has
a default of its own. Kubernetes objects passed through to pods untouched (volume sources,
resources) stay JSON.
"""

from __future__ import annotations

import dataclasses
import re
import types
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Union, get_args, get_origin, get_type_hints

from .crd import JSON, validated
from .errors import Permanent
from .names import KIND


@dataclass(frozen=True)
class KeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class FileRef:
    """A recipe or filter file: a local file (local mode) or a ConfigMap key (in a cluster)."""

    file: str | None
    config_map_key_ref: KeyRef | None


@dataclass(frozen=True)
class PseudonymKey:
    secret_key_ref: KeyRef | None


@dataclass(frozen=True)
class IdentifierService:
    url: str
    timeout_seconds: float
    retries: int
    token_secret_ref: KeyRef | None


@dataclass(frozen=True)
class Pixels:
    policy: str  # clean | withhold
    trust_burned_in_annotation: bool
    retain_recognizable_visual_features: bool
    filters: tuple[FileRef, ...]


@dataclass(frozen=True)
class Deidentify:
    profile: str
    keep_descriptors: tuple[str, ...]
    cap_ages: bool
    recipe: FileRef | None
    pseudonym_key: PseudonymKey | None
    identifier_service: IdentifierService | None
    pixels: Pixels

    def config_maps(self) -> list[KeyRef]:
        """Every ConfigMap key the batch reads (recipe and pixel filters)."""
        refs = [self.recipe, *self.pixels.filters]
        return [r.config_map_key_ref for r in refs if r and r.config_map_key_ref]

    def secrets(self) -> list[KeyRef]:
        key = self.pseudonym_key.secret_key_ref if self.pseudonym_key else None
        token = self.identifier_service.token_secret_ref if self.identifier_service else None
        return [r for r in (key, token) if r]


@dataclass(frozen=True)
class Source:
    volume: JSON | None
    folders: tuple[str, ...]


@dataclass(frozen=True)
class Local:
    path: str


@dataclass(frozen=True)
class Gcs:
    bucket: str
    prefix: str
    layout: str  # dicom | tar.gz | nifti
    concurrency: int
    checksum: str  # crc32c | md5


@dataclass(frozen=True)
class BigQuery:
    project: str
    dataset: str
    table: str
    location: str
    endpoint: str | None  # an emulator's; else $BIGQUERY_EMULATOR_HOST, else Google's

    @property
    def table_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"


@dataclass(frozen=True)
class PubSub:
    topic: str
    project: str | None

    @property
    def topic_path(self) -> str:
        """projects/P/topics/T. The schema's rule asks for a project unless the topic is a
        path; outside a cluster nothing runs that rule, so this says it."""
        if self.topic.startswith("projects/"):
            return self.topic
        if not self.project:
            raise Permanent("give pubsub.topic as projects/P/topics/T, or give pubsub.project")
        return f"projects/{self.project}/topics/{self.topic}"


@dataclass(frozen=True)
class DicomWeb:
    url: str


@dataclass(frozen=True)
class StorageCommitment:
    mode: str  # auto | required | disabled
    port: int  # where Sendit listens for an N-EVENT-REPORT on a new association
    bind_address: str
    timeout_seconds: float


AE_TITLE_LENGTH = 16  # at most (PS3.5, VR AE)


@dataclass(frozen=True)
class Dimse:
    host: str
    port: int
    called_ae_title: str = field(metadata={"schema": "calledAETitle"})
    calling_ae_title: str = field(metadata={"schema": "callingAETitle"})
    tls: bool
    storage_commitment: StorageCommitment

    def listener(self, shard: tuple[int, int]) -> tuple[str, int]:
        """The calling AE title and storage commitment report port of shard (index, count):
        alone, the configured ones; one of several, `<AE title>-<index>` on port + index. A
        PACS that reports on a new association sends it to the address it knows for the
        calling AE title: a title and an address per shard bring each report to the shard
        that asked for it (the operator makes a Service per shard on that port)."""
        index, count = shard
        title, port = self.calling_ae_title, self.storage_commitment.port
        if count == 1:
            return title, port
        if len(f"{title}-{index}") > AE_TITLE_LENGTH:
            raise Permanent(
                f"callingAETitle {title!r} leaves no room for the shard's suffix -{index} "
                f"(an AE title has at most {AE_TITLE_LENGTH} characters)"
            )
        if port + index > 65535:
            raise Permanent(f"storageCommitment.port {port} + shard {index} is no port")
        return f"{title}-{index}", port + index


@dataclass(frozen=True)
class SecretRef:
    name: str


@dataclass(frozen=True)
class Pacs:
    dicomweb: DicomWeb | None
    dimse: Dimse | None
    credentials_secret_ref: SecretRef | None
    concurrency: int


@dataclass(frozen=True)
class Destinations:
    local: Local | None
    gcs: Gcs | None
    bigquery: BigQuery | None
    pubsub: PubSub | None
    pacs: Pacs | None

    def kinds(self) -> list[str]:
        """The destination kinds the batch names, as the schema spells them."""
        return [schema_key(f) for f in dataclasses.fields(self) if getattr(self, f.name)]

    @property
    def remote(self) -> bool:
        """Anything beyond a local folder: delivery with preflight, a ledger and events."""
        return any((self.gcs, self.bigquery, self.pubsub, self.pacs))


@dataclass(frozen=True)
class Cleanup:
    source: str  # keep | delete


@dataclass(frozen=True)
class BatchSpec:
    source: Source
    deidentify: Deidentify
    destinations: Destinations
    workspace: JSON | None
    cleanup: Cleanup
    send: str  # auto | manual
    parallelism: int
    image: str | None
    image_pull_policy: str | None
    service_account_name: str | None
    resources: JSON | None
    backoff_limit: int
    active_deadline_seconds: int | None
    ttl_seconds_after_finished: int | None
    suspend: bool
    cancel: bool

    def secret_names(self) -> list[str]:
        """Every Secret the batch reads: the pseudonym key, tokens, destination credentials."""
        pacs = self.destinations.pacs
        names = [r.name for r in self.deidentify.secrets()]
        if pacs and pacs.credentials_secret_ref:
            names.append(pacs.credentials_secret_ref.name)
        return names

    @property
    def keeps_workspace(self) -> bool:
        """A workspace that outlives the batch's pods (not an emptyDir): its plan, staging and
        the quarantine of its withheld images stay there."""
        return bool(self.workspace) and "emptyDir" not in self.workspace

    def claims(self) -> list[str]:
        volumes = [self.source.volume or {}, self.workspace or {}]
        return [
            v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
        ]


@dataclass(frozen=True)
class Batch:
    """A SenditBatch: the names of its metadata that Sendit reads, and its spec."""

    name: str
    namespace: str | None
    uid: str | None
    generation: int
    spec: BatchSpec
    # The manifest as validated (defaults in): what a release of its withheld images starts from.
    manifest: JSON = field(repr=False, compare=False)


def parse_batch(manifest: Any) -> Batch:
    """Validate and default a manifest by the CRD, then type it. Raises ManifestError."""
    body = validated(manifest, KIND)
    meta = body.get("metadata") or {}
    return Batch(
        name=str(meta.get("name") or "batch"),
        namespace=meta.get("namespace"),
        uid=meta.get("uid"),
        generation=int(meta.get("generation") or 1),
        spec=build(BatchSpec, body["spec"]),
        manifest=body,
    )


def build(cls: type, data: JSON) -> Any:
    """A dataclass from its JSON (camelCase keys), converting nested objects by their types."""
    hints = _hints(cls)
    return cls(**{f.name: _convert(hints[f.name], data.get(schema_key(f))) for f in _fields(cls)})


def _convert(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        (inner,) = (a for a in get_args(kind) if a is not type(None))
        return _convert(inner, value)
    if origin is tuple:
        return tuple(_convert(get_args(kind)[0], v) for v in value)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise Permanent(f"{kind.__name__} must be an object")
        return build(kind, value)
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


@cache
def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(cls)


def schema_key(f: dataclasses.Field) -> str:
    """A field's name in the CRD: snake_case to camelCase, unless the field names it (DICOM
    spells some acronyms whole: calledAETitle)."""
    return f.metadata.get("schema") or re.sub(r"_([a-z])", lambda m: m[1].upper(), f.name)
