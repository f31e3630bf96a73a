"""DICOM storage commitment (PS3.4 Annex J, Push Model) for a DIMSE PACS.

After the C-STOREs of a series, an N-ACTION asks the PACS to commit to those instances; its
N-EVENT-REPORT lists the ones it holds (ReferencedSOPSequence) and the ones it does not
(FailedSOPSequence, each with a reason). A PACS may send that report on the association of the
request, if still open (we offer it the SCP role there), or on a new association to the
address it knows for our AE title, as Orthanc does: a Listener here takes those for every
series of a run, and Reports hands each to the series that waits for its Transaction UID. The
shards of a batch each call with an AE title of their own and listen on a port of their own
(`Dimse.listener`), so the PACS sends each report to the shard that asked for it.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass, field

from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from .errors import DestinationError

log = logging.getLogger("sendit.pacs")

PUSH_MODEL = "1.2.840.10008.1.20.1"  # Storage Commitment Push Model SOP Class
PUSH_MODEL_INSTANCE = "1.2.840.10008.1.20.1.1"  # its well-known SOP Instance
REQUEST_COMMITMENT = 1  # the N-ACTION's Action Type ID
PROCESSING_FAILURE = 0x0110

# Failure Reasons: PS3.4 Table J.3.2-2 (a commitment report)
FAILURE_REASONS = {
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0119: "class-instance conflict",
    0x0122: "SOP class not supported",
    0x0131: "duplicate transaction UID",
    0x0213: "resource limitation",
    0xA770: "referenced SOP class not supported",
    0xA790: "referenced SOP instance UID conflict",
    # and, in a STOW-RS response, C-STORE's failures (PS3.4 Table B.2-1)
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
}


def reason(code: int) -> str:
    return f"0x{code:04X} {FAILURE_REASONS.get(code, 'unknown reason')}"


@dataclass(frozen=True)
class Result:
    committed: frozenset[str]  # SOP Instance UIDs the PACS holds
    failed: dict[str, int] = field(default_factory=dict)  # the others: UID -> Failure Reason


def request(instances: list[tuple[str, str]]) -> Dataset:
    """The N-ACTION's Action Information for (SOP Class UID, SOP Instance UID) pairs, under a
    new Transaction UID."""
    info = Dataset()
    info.TransactionUID = generate_uid()
    refs = []
    for sop_class, sop_instance in instances:
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = sop_instance
        refs.append(ref)
    info.ReferencedSOPSequence = refs
    return info


def result(report: Dataset) -> Result:
    """What an N-EVENT-REPORT's Event Information says was committed and what failed."""
    committed = frozenset(
        str(item.ReferencedSOPInstanceUID) for item in report.get("ReferencedSOPSequence", [])
    )
    failed = {
        str(item.ReferencedSOPInstanceUID): int(item.get("FailureReason", PROCESSING_FAILURE))
        for item in report.get("FailedSOPSequence", [])
    }
    return Result(committed, failed)


class Reports:
    """The reports a run waits for, by Transaction UID, from whichever association brings them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, threading.Event] = {}
        self._results: dict[str, Result] = {}

    def expect(self, transaction: str) -> None:
        with self._lock:
            self._waiting[transaction] = threading.Event()

    def wait(self, transaction: str, timeout: float) -> Result | None:
        """The report, or None when none came within timeout."""
        with self._lock:
            arrived = self._waiting[transaction]
        arrived.wait(timeout)
        with self._lock:
            return self._results.get(transaction)

    def forget(self, transaction: str) -> None:
        """No longer waited for: a report that comes later is refused."""
        with self._lock:
            self._waiting.pop(transaction, None)
            self._results.pop(transaction, None)

    def handle(self, event: evt.Event) -> tuple[int, None]:
        """EVT_N_EVENT_REPORT: the status we answer the PACS with (and no Event Reply)."""
        report = event.event_information
        transaction = str(report.get("TransactionUID", ""))
        with self._lock:
            arrived = self._waiting.get(transaction)
            if arrived is None:  # not ours, or too late: the PACS should not count it delivered
                log.warning("a storage commitment report for no waiting series was refused")
                return PROCESSING_FAILURE, None
            self._results[transaction] = result(report)
        arrived.set()
        return 0x0000, None


class Listener:
    """An SCP for the reports that come on a new association, bound while a run delivers."""

    def __init__(
        self,
        ae_title: str,
        address: tuple[str, int],
        reports: Reports,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.ae_title, self.address, self.reports, self.tls = ae_title, address, reports, tls
        self._lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None

    def start(self) -> None:
        """Bind (once); a port that cannot be bound is a configuration error."""
        with self._lock:
            if self._server is not None:
                return
            ae = AE(ae_title=self.ae_title)
            # The PACS, as the SOP class's SCP, requests the association: both roles offered.
            ae.add_supported_context(PUSH_MODEL, scu_role=True, scp_role=True)
            try:
                self._server = ae.start_server(
                    self.address,
                    block=False,
                    evt_handlers=[(evt.EVT_N_EVENT_REPORT, self.reports.handle)],
                    ssl_context=self.tls,
                )
            except OSError as exc:
                host, port = self.address
                raise DestinationError(
                    f"cannot listen for storage commitment reports on {host}:{port} "
                    f"({exc.strerror or type(exc).__name__})"
                ) from None

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.shutdown()
                self._server = None
