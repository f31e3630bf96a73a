"""A PACS: DICOMweb STOW-RS (dicomweb-client) or DIMSE C-STORE (pynetdicom), verified on
receipt. An image counts as delivered only when the PACS acknowledged that instance: listed in
the STOW-RS response's ReferencedSOPSequence, or a C-STORE status of success or warning (a
PACS that already holds it says so there too). Anything else fails the series, which stays
out of the ledger, so a rerun sends it again and nothing twice.

DICOMweb credentials come from the environment (the operator fills it from the batch's
pacs.credentialsSecretRef): a username and password (basic auth) or a token (bearer).

Errors: a PACS that refuses us (unknown AE title, 401/403/404) is permanent and found at
preflight (a C-ECHO, a QIDO-RS probe); one that does not answer usefully (no connection,
5xx, a timeout, an association aborted) is transient and retried with backoff.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset
from pynetdicom import AE, build_context

from sendit_api.names import PACS_CREDENTIAL_ENV
from sendit_api.spec import Pacs

from ..images import DeidentifiedImage
from .errors import DeliveryError, DestinationError, DestinationUnavailable

log = logging.getLogger("sendit.pacs")

ATTEMPTS = 3
BACKOFF = 1.0  # seconds before the second attempt, doubled after
TIMEOUT = 60
PART = 50  # instances per STOW-RS request
T = TypeVar("T")


class Transient(Exception):
    """The PACS did not answer usefully this time."""


class PacsSink:
    def __init__(self, config: Pacs) -> None:
        if (config.dicomweb is None) == (config.dimse is None):
            raise DestinationError("give exactly one of pacs.dicomweb and pacs.dimse")
        self.config = config
        self.session = _session()
        self.what = (
            f"PACS at {config.dicomweb.url}"
            if config.dicomweb
            else f"PACS {config.dimse.called_ae_title}@{config.dimse.host}:{config.dimse.port}"
        )

    # -- before any data moves ----------------------------------------------------------------

    def preflight(self) -> None:
        if self.config.dicomweb:
            self._probe_dicomweb()
        else:
            self._echo()

    def _probe_dicomweb(self) -> None:
        url = f"{self.config.dicomweb.url.rstrip('/')}/studies"
        try:
            response = self.session.get(url, params={"limit": 1}, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise DestinationUnavailable(
                f"{self.what} is not reachable now ({type(exc).__name__}); retry later"
            ) from None
        if response.status_code in (401, 403):
            raise DestinationError(f"no permission on {self.what}")
        if response.status_code == 404:
            raise DestinationError(f"{self.what} has no DICOMweb QIDO-RS at that URL")
        if response.status_code >= 500:
            raise DestinationUnavailable(f"{self.what} answered {response.status_code}")
        if response.status_code >= 400:
            raise DestinationError(f"{self.what} refused the probe ({response.status_code})")

    def _echo(self) -> None:
        dimse = self.config.dimse
        ae = AE(ae_title=dimse.calling_ae_title)
        ae.add_requested_context("1.2.840.10008.1.1")  # Verification
        assoc = ae.associate(dimse.host, dimse.port, ae_title=dimse.called_ae_title)
        if assoc.is_rejected:
            raise DestinationError(f"{self.what} refused the association (check the AE titles)")
        if not assoc.is_established:
            raise DestinationUnavailable(f"{self.what} is not reachable now; retry later")
        try:
            status = assoc.send_c_echo()
        finally:
            assoc.release()
        if not status or status.Status != 0:
            raise DestinationError(f"{self.what} does not answer C-ECHO")

    # -- one series ---------------------------------------------------------------------------

    def store(self, images: list[DeidentifiedImage]) -> int:
        """Store a series; the images the PACS acknowledged (all of them, or DeliveryError)."""
        send = self._stow if self.config.dicomweb else self._c_store
        acknowledged = _retried(lambda: send(images), self.what)
        missing = len({i.sop for i in images} - acknowledged)
        if missing:
            raise DeliveryError(f"{self.what} did not acknowledge {missing} images of a series")
        return len(images)

    def _stow(self, images: list[DeidentifiedImage]) -> set[str]:
        client = DICOMwebClient(self.config.dicomweb.url, session=self.session, timeout=TIMEOUT)
        acknowledged: set[str] = set()
        for start in range(0, len(images), PART):
            part = [pydicom.dcmread(i.path) for i in images[start : start + PART]]
            try:
                response = client.store_instances(part)
            except requests.HTTPError as exc:
                if exc.response is None or exc.response.status_code >= 500:
                    raise Transient() from None
                response = _stow_response(exc.response)  # 409: some or all were refused
            except requests.RequestException:
                raise Transient() from None
            acknowledged |= {
                str(item.ReferencedSOPInstanceUID)
                for item in response.get("ReferencedSOPSequence", [])
            }
        return acknowledged

    def _c_store(self, images: list[DeidentifiedImage]) -> set[str]:
        dimse = self.config.dimse
        headers = [pydicom.dcmread(i.path, stop_before_pixels=True) for i in images]
        ae = AE(ae_title=dimse.calling_ae_title)
        # The presentation contexts the files need: their SOP classes in their own syntaxes.
        wanted = {(h.SOPClassUID, h.file_meta.TransferSyntaxUID) for h in headers}
        ae.requested_contexts = [build_context(c, [ts]) for c, ts in sorted(wanted)][:128]
        assoc = ae.associate(dimse.host, dimse.port, ae_title=dimse.called_ae_title)
        if not assoc.is_established:
            raise Transient()
        acknowledged: set[str] = set()
        try:
            for image in images:
                try:
                    status = assoc.send_c_store(str(image.path))
                except ValueError:  # pynetdicom: no accepted context for this file's kind
                    log.warning("the PACS accepted no presentation context for an image")
                    continue
                if not status:  # no answer: the association went
                    raise Transient()
                if _stored(int(status.Status)):
                    acknowledged.add(image.sop)
                else:
                    log.warning("the PACS refused an image (status 0x%04X)", int(status.Status))
        finally:
            if assoc.is_established:
                assoc.release()
        return acknowledged


def _session() -> requests.Session:
    """A session with the DICOMweb credentials the environment holds, if any."""
    session = requests.Session()
    given = {key: os.environ.get(variable) for key, variable in PACS_CREDENTIAL_ENV.items()}
    if given["token"]:
        session.headers["Authorization"] = f"Bearer {given['token']}"
    elif given["username"] and given["password"]:
        session.auth = (given["username"], given["password"])
    return session


def _stored(status: int) -> bool:
    """C-STORE success, or a warning (coercion, elements discarded, already stored)."""
    return status == 0x0000 or (status & 0xF000) == 0xB000 or status == 0x0107


def _stow_response(response: requests.Response) -> Dataset:
    try:
        return Dataset.from_json(response.json())
    except ValueError:
        return Dataset()


def _retried(attempt: Callable[[], T], what: str) -> T:
    """Transient failures retried with backoff; the last one is the batch's DeliveryError."""
    delay = BACKOFF
    for _ in range(ATTEMPTS - 1):
        try:
            return attempt()
        except Transient:
            time.sleep(delay)
            delay *= 2
    try:
        return attempt()
    except Transient:
        raise DeliveryError(f"{what} did not answer usefully {ATTEMPTS} times") from None
