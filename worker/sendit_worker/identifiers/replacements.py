"""Replacement identifiers per patient: a pseudonymous ID, a date shift, a pseudonym per study.

Two sources with one interface: `LocalIdentifiers` derives them from the pseudonym key (no
network), `ServiceIdentifiers` asks a REST identifier service in the style of Stanford's DASHER
(POST the patient entity with its items; receive a study-unique id `suid`, a `jitter` in days and
jittered timestamps per item).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sendit_api.errors import Transient

from .pseudonyms import Pseudonymizer


@dataclass(frozen=True)
class PatientIdentifiers:
    patient: str  # pseudonymous PatientID, also used as PatientName
    jitter_days: int
    studies: Mapping[str, str]  # item key (accession or study UID) -> pseudonymous accession


# patient key -> item key -> item timestamp (ISO 8601) or None
Entities = Mapping[str, Mapping[str, str | None]]


class IdentifierSource(Protocol):
    def resolve(self, entities: Entities) -> dict[str, PatientIdentifiers]: ...


@dataclass(frozen=True)
class LocalIdentifiers:
    pseudonymizer: Pseudonymizer

    def resolve(self, entities: Entities) -> dict[str, PatientIdentifiers]:
        p = self.pseudonymizer
        return {
            patient: PatientIdentifiers(
                patient=p.patient(patient),
                jitter_days=p.jitter_days(patient),
                studies={item: p.study(item) for item in items},
            )
            for patient, items in entities.items()
        }


class IdentifierServiceError(Transient):
    """The identifier service is down or answered something unusable."""


class ServiceIdentifiers:
    """A DASHER-style identifier service, one POST per patient entity, with retries."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        retries: int,
        token: str | None = None,
        entity_source: str = "PatientID",
        item_source: str = "AccessionNumber",
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.entity_source = entity_source
        self.item_source = item_source
        self.session = requests.Session()
        retry = Retry(
            total=retries,
            backoff_factor=0.2,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,  # POST is idempotent here: the service maps, it does not create
        )
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def resolve(self, entities: Entities) -> dict[str, PatientIdentifiers]:
        return {patient: self._one(patient, items) for patient, items in entities.items()}

    def _one(self, patient: str, items: Mapping[str, str | None]) -> PatientIdentifiers:
        body = {
            "identifiers": [
                {
                    "id": patient,
                    "id_source": self.entity_source,
                    "items": [
                        {"id": item, "id_source": self.item_source, "id_timestamp": stamp}
                        for item, stamp in items.items()
                    ],
                }
            ]
        }
        try:
            response = self.session.post(self.url, json=body, timeout=self.timeout)
            response.raise_for_status()
            result = response.json()["results"][0]
            studies = {item["id"]: str(item["suid"]) for item in result["items"]}
            ids = PatientIdentifiers(str(result["suid"]), int(result["jitter"]), studies)
        except requests.RequestException as exc:
            # The exception text can echo the request; name only the kind of failure.
            raise IdentifierServiceError(
                f"identifier service unavailable ({type(exc).__name__})"
            ) from None
        except (KeyError, IndexError, TypeError, ValueError):
            raise IdentifierServiceError("identifier service gave an unusable answer") from None
        if set(studies) != set(items):
            raise IdentifierServiceError("identifier service did not answer for every study")
        return ids
