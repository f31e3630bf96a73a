"""A PACS: DICOMweb STOW-RS (dicomweb-client) or DIMSE C-STORE (pynetdicom), verified on
receipt. An image counts as delivered only when the PACS acknowledged that instance: listed in
the STOW-RS response's ReferencedSOPSequence; over DIMSE, listed as committed in the storage
commitment report when the PACS takes commitment requests (commitment.py), else a C-STORE
status of success or warning (a PACS that already holds it says so there too). Anything else
fails the series, with the PACS's reason, and it stays out of the ledger, so a rerun sends it
again and nothing twice.

Credentials come from the environment (the operator fills it from the batch's
pacs.credentialsSecretRef): a username and password (basic auth) or a token (bearer) for
DICOMweb, and PEM files for TLS (a CA bundle, a client certificate and key).

Errors: a PACS that refuses us (unknown AE title, 401/403/404) is permanent and found at
preflight (a C-ECHO, a QIDO-RS probe); one that does not answer usefully (no connection,
5xx, a timeout, an association aborted, no commitment report in time) is transient and
retried with backoff.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.association import Association

from sendit_api.names import PACS_CREDENTIAL_ENV, PACS_TLS_ENV
from sendit_api.spec import Pacs

from . import commitment
from .errors import DeliveryError, DestinationError, DestinationUnavailable
from .image import DeidentifiedImage

log = logging.getLogger("sendit.pacs")

ATTEMPTS = 3
BACKOFF = 1.0  # seconds before the second attempt, doubled after
TIMEOUT = 60
PART = 50  # instances per STOW-RS request
VERIFICATION = "1.2.840.10008.1.1"
T = TypeVar("T")


class Transient(Exception):
    """The PACS did not answer usefully this time (the message says how)."""


@dataclass
class Outcome:
    """What the PACS said of a series' images."""

    acknowledged: set[str] = field(default_factory=set)  # SOP Instance UIDs
    refused: list[str] = field(default_factory=list)  # the PACS's reason, per refused image


class PacsSink:
    def __init__(self, config: Pacs, shard: tuple[int, int] = (0, 1)) -> None:
        if (config.dicomweb is None) == (config.dimse is None):
            raise DestinationError("give exactly one of pacs.dicomweb and pacs.dimse")
        self.config = config
        dimse = config.dimse
        # This shard's calling AE title and report port (its own, when the batch has several).
        self.ae_title, self.report_port = dimse.listener(shard) if dimse else ("", 0)
        self.tls = _tls_files()
        self.session = _session(self.tls)
        self.what = (
            f"PACS at {config.dicomweb.url}"
            if config.dicomweb
            else f"PACS {config.dimse.called_ae_title}@{config.dimse.host}:{config.dimse.port}"
        )
        self.reports = commitment.Reports()
        self.listener: commitment.Listener | None = None
        self._commit = bool(config.dimse) and config.dimse.storage_commitment.mode != "disabled"

    def _tls_failed(self) -> DestinationError:
        return DestinationError(
            f"{self.what}: the TLS handshake failed (check ca.crt, tls.crt and tls.key)"
        )

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()

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
        except requests.exceptions.SSLError:
            raise self._tls_failed() from None
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
        """A C-ECHO; with storage commitment required, the PACS must also accept it, and the
        listener for its reports is bound now (a port in use fails here, not mid-batch)."""
        if self.config.dimse.tls:
            self._probe_tls()
        assoc = self._associate([build_context(VERIFICATION)])
        if assoc.is_rejected:
            raise DestinationError(f"{self.what} refused the association (check the AE titles)")
        if not assoc.is_established:
            raise DestinationUnavailable(f"{self.what} is not reachable now; retry later")
        try:
            status = assoc.send_c_echo()
            commits = _accepts(assoc, commitment.PUSH_MODEL)
        finally:
            assoc.release()
        if not status or status.Status != 0:
            raise DestinationError(f"{self.what} does not answer C-ECHO")
        mode = self.config.dimse.storage_commitment.mode
        if mode == "required" and not commits:
            raise DestinationError(f"{self.what} does not take storage commitment requests")
        if self._commit and commits:
            self._listen()

    def _probe_tls(self) -> None:
        """A TLS handshake alone: pynetdicom reports a failed one as no connection, so a
        certificate the PACS or we refuse would look transient."""
        dimse = self.config.dimse
        try:
            with (
                socket.create_connection((dimse.host, dimse.port), timeout=TIMEOUT) as raw,
                _client_context(self.tls).wrap_socket(raw, server_hostname=dimse.host) as tls,
            ):
                tls.settimeout(1)  # TLS 1.3: a refused client certificate comes after, as an alert
                with contextlib.suppress(TimeoutError):
                    if tls.recv(1) == b"":
                        raise ssl.SSLError("closed")
        except ssl.SSLError:
            raise self._tls_failed() from None
        except OSError as exc:
            raise DestinationUnavailable(
                f"{self.what} is not reachable now ({type(exc).__name__}); retry later"
            ) from None

    # -- one series ---------------------------------------------------------------------------

    def store(self, images: list[DeidentifiedImage]) -> int:
        """Store a series; the images the PACS acknowledged (all of them, or DeliveryError
        with the PACS's reasons for the others)."""
        send = self._stow if self.config.dicomweb else self._c_store
        outcome = _retried(lambda: send(images), self.what)
        missing = len({i.sop for i in images} - outcome.acknowledged)
        if missing:
            reasons = Counter(outcome.refused or ["no answer for them"])
            why = "; ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
            raise DeliveryError(
                f"{self.what} did not acknowledge {missing} of {len(images)} images of a "
                f"series ({why})"
            )
        return len(images)

    def _stow(self, images: list[DeidentifiedImage]) -> Outcome:
        client = DICOMwebClient(self.config.dicomweb.url, session=self.session, timeout=TIMEOUT)
        outcome = Outcome()
        for start in range(0, len(images), PART):
            part = [pydicom.dcmread(i.path) for i in images[start : start + PART]]
            try:
                response = client.store_instances(part)
            except requests.HTTPError as exc:
                if exc.response is None or exc.response.status_code >= 500:
                    raise Transient(f"STOW-RS answered {_status(exc.response)}") from None
                response = _stow_response(exc.response)  # 409: some or all were refused
                if "FailedSOPSequence" not in response and "ReferencedSOPSequence" not in response:
                    outcome.refused += [f"STOW-RS {exc.response.status_code}"] * len(part)
            except requests.RequestException as exc:
                raise Transient(f"STOW-RS failed ({type(exc).__name__})") from None
            outcome.acknowledged |= {
                str(item.ReferencedSOPInstanceUID)
                for item in response.get("ReferencedSOPSequence", [])
            }
            outcome.refused += [
                f"refused: failure reason {commitment.reason(int(item.get('FailureReason', 0)))}"
                for item in response.get("FailedSOPSequence", [])
            ]
        # Checked: Orthanc's plugin lists an instance its own filter dropped as stored.
        held = self._held(client, images[0])
        outcome.refused += ["listed by STOW-RS, not held"] * len(outcome.acknowledged - held)
        outcome.acknowledged &= held
        return outcome

    def _held(self, client: DICOMwebClient, image: DeidentifiedImage) -> set[str]:
        """The SOP Instance UIDs the PACS lists in the image's series (QIDO-RS)."""
        try:
            found = client.search_for_instances(
                image.metadata.study, image.series, fields=["00080018"], get_remaining=True
            )
        except requests.HTTPError as exc:
            raise Transient(f"QIDO-RS answered {_status(exc.response)}") from None
        except requests.RequestException as exc:
            raise Transient(f"QIDO-RS failed ({type(exc).__name__})") from None
        return {str(i["00080018"]["Value"][0]) for i in found if i.get("00080018", {}).get("Value")}

    def _c_store(self, images: list[DeidentifiedImage]) -> Outcome:
        headers = {i.sop: pydicom.dcmread(i.path, stop_before_pixels=True) for i in images}
        # The presentation contexts the files need: their SOP classes in their own syntaxes.
        wanted = {(h.SOPClassUID, h.file_meta.TransferSyntaxUID) for h in headers.values()}
        contexts = [build_context(c, [ts]) for c, ts in sorted(wanted)][:127]
        assoc = self._associate(contexts)
        if not assoc.is_established:
            raise Transient("no association")
        stored: set[str] = set()
        outcome = Outcome()
        try:
            for image in images:
                try:
                    status = assoc.send_c_store(str(image.path))
                except ValueError:  # pynetdicom: no accepted context for this file's kind
                    outcome.refused.append("no presentation context accepted for its kind")
                    continue
                if not status:  # no answer: the association went
                    raise Transient("the association went during C-STORE")
                if _stored(int(status.Status)):
                    stored.add(image.sop)
                else:
                    outcome.refused.append(f"C-STORE status 0x{int(status.Status):04X}")
            committed = self._committed(assoc, [headers[sop] for sop in sorted(stored)])
        finally:
            if assoc.is_established:
                assoc.release()
        if committed is None:  # no commitment: the C-STORE statuses count
            outcome.acknowledged = stored
        else:
            outcome.acknowledged = set(committed.committed) & stored
            outcome.refused += [
                f"not committed: failure reason {commitment.reason(code)}"
                for code in committed.failed.values()
            ]
        return outcome

    # -- DIMSE: associations and storage commitment ---------------------------------------------

    def _associate(self, contexts: list) -> Association:
        """An association for these contexts, and for storage commitment when wanted (with both
        roles offered, so the PACS may report on this association)."""
        dimse = self.config.dimse
        ae = AE(ae_title=self.ae_title)
        ext_neg = []
        if self._commit:
            contexts = [*contexts, build_context(commitment.PUSH_MODEL)]
            ext_neg = [build_role(commitment.PUSH_MODEL, scu_role=True, scp_role=True)]
        ae.requested_contexts = contexts
        try:
            tls = (_client_context(self.tls), dimse.host) if dimse.tls else None
            return ae.associate(
                dimse.host,
                dimse.port,
                ae_title=dimse.called_ae_title,
                ext_neg=ext_neg,
                tls_args=tls,
                evt_handlers=[(evt.EVT_N_EVENT_REPORT, self.reports.handle)],
            )
        except ssl.SSLError:
            raise self._tls_failed() from None

    def _committed(self, assoc: Association, stored: list[Dataset]) -> commitment.Result | None:
        """The PACS's commitment report for the stored instances, or None when the C-STORE
        statuses must do (commitment disabled, or, in auto mode, not taken by this PACS)."""
        settings = self.config.dimse.storage_commitment
        if not self._commit or not stored:
            return None
        if not _accepts(assoc, commitment.PUSH_MODEL):
            return self._without_commitment("does not take storage commitment requests")
        if not self._listen():
            return None
        info = commitment.request([(h.SOPClassUID, h.SOPInstanceUID) for h in stored])
        transaction = str(info.TransactionUID)
        self.reports.expect(transaction)  # before the request: the report may follow at once
        try:
            status, _ = assoc.send_n_action(
                info,
                commitment.REQUEST_COMMITMENT,
                commitment.PUSH_MODEL,
                commitment.PUSH_MODEL_INSTANCE,
            )
            accepted = bool(status) and int(status.Status) == 0
            report = self.reports.wait(transaction, settings.timeout_seconds) if accepted else None
        finally:
            self.reports.forget(transaction)
        if not accepted:
            # Orthanc refuses (and aborts) a request from an AE title it has no modality for.
            return self._without_commitment("refused the storage commitment request")
        if report is None:
            raise Transient(
                f"no storage commitment report within {settings.timeout_seconds:g} s "
                f"(can the PACS reach {self.ae_title} at port {self.report_port}?)"
            )
        return report

    def _without_commitment(self, why: str) -> None:
        """Required: a DestinationError. Auto: the C-STORE statuses count from now on."""
        if self.config.dimse.storage_commitment.mode == "required":
            raise DestinationError(f"{self.what} {why}, and storageCommitment is required")
        if self._commit:
            log.warning("%s %s: the C-STORE statuses count instead", self.what, why)
            self._commit = False  # for the rest of the run
        return None

    def _listen(self) -> bool:
        """Bind the listener for reports (once); False when it cannot, in auto mode."""
        settings = self.config.dimse.storage_commitment
        try:
            if self.listener is None:
                self.listener = commitment.Listener(
                    self.ae_title,
                    (settings.bind_address, self.report_port),
                    self.reports,
                    _server_context(self.tls) if self.config.dimse.tls else None,
                )
            self.listener.start()
        except DestinationError as exc:
            self._without_commitment(f"({exc})")
            return False
        return True


def _tls_files() -> dict[str, Path]:
    """The TLS material the environment names (PEM files), by the Secret's key."""
    found = {}
    for key, variable in PACS_TLS_ENV.items():
        path = os.environ.get(variable)
        if path and Path(path).is_file():  # a key the Secret lacks is mounted as no file
            found[key] = Path(path)
    return found


def _client_context(tls: dict[str, Path]) -> ssl.SSLContext:
    """Verifies the PACS by ca.crt (else the system's CAs); presents tls.crt if given."""
    context = ssl.create_default_context(cafile=tls.get("ca.crt"))
    if "tls.crt" in tls:
        context.load_cert_chain(tls["tls.crt"], tls.get("tls.key"))
    return context


def _server_context(tls: dict[str, Path]) -> ssl.SSLContext:
    """The commitment listener's: tls.crt and tls.key; a PACS without a certificate ca.crt
    trusts is refused."""
    if "tls.crt" not in tls:
        raise DestinationError("storage commitment over TLS needs tls.crt and tls.key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls.get("ca.crt"))
    context.load_cert_chain(tls["tls.crt"], tls.get("tls.key"))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Session(requests.Session):
    """requests prefers $REQUESTS_CA_BUNDLE (often set, in images too) to a session's own
    verify: a ca.crt given for the PACS must win."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str):
            settings["verify"] = self.verify
        return settings


def _session(tls: dict[str, Path]) -> requests.Session:
    """A session with the DICOMweb credentials the environment holds, if any."""
    session = _Session()
    given = {key: os.environ.get(variable) for key, variable in PACS_CREDENTIAL_ENV.items()}
    if given["token"]:
        session.headers["Authorization"] = f"Bearer {given['token']}"
    elif given["username"] and given["password"]:
        session.auth = (given["username"], given["password"])
    if "ca.crt" in tls:
        session.verify = str(tls["ca.crt"])
    if "tls.crt" in tls:
        key = tls.get("tls.key")
        session.cert = (str(tls["tls.crt"]), str(key)) if key else str(tls["tls.crt"])
    return session


def _accepts(assoc: Association, sop_class: str) -> bool:
    return any(cx.abstract_syntax == sop_class for cx in assoc.accepted_contexts)


def _stored(status: int) -> bool:
    """C-STORE success, or a warning (coercion, elements discarded, already stored)."""
    return status == 0x0000 or (status & 0xF000) == 0xB000 or status == 0x0107


def _status(response: requests.Response | None) -> str:
    return str(response.status_code) if response is not None else "nothing"


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
    except Transient as exc:
        raise DeliveryError(f"{what} did not answer usefully {ATTEMPTS} times ({exc})") from None
