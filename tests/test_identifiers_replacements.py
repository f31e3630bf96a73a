"""Identifier sources: the local keyed one, and a DASHER-style service over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from dicomdata import KEY

from sendit_worker.identifiers.pseudonyms import Pseudonymizer
from sendit_worker.identifiers.replacements import (
    IdentifierServiceError,
    LocalIdentifiers,
    ServiceIdentifiers,
)

ENTITIES = {"MRN1": {"ACC1": "2020-01-02T03:04:05Z", "ACC2": None}}


class Dasher(BaseHTTPRequestHandler):
    """A small identifier service in DASHER's request/response shape, started by the test."""

    failures_left = 0
    requests: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        entity = body["identifiers"][0]
        result = {
            "id": entity["id"],
            "id_source": entity["id_source"],
            "suid": "SU" + entity["id"][-1],
            "jitter": -7,
            "items": [
                {
                    "id": i["id"],
                    "id_source": i["id_source"],
                    "suid": "IT" + i["id"][-1],
                    "jittered_timestamp": i["id_timestamp"],
                }
                for i in entity["items"]
            ],
        }
        payload = json.dumps({"results": [result]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dasher() -> Iterator[str]:
    Dasher.failures_left = 0
    Dasher.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Dasher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/identifiers"
    server.shutdown()


def test_local_identifiers_are_stable_and_keyed() -> None:
    a = LocalIdentifiers(Pseudonymizer(KEY)).resolve(ENTITIES)["MRN1"]
    b = LocalIdentifiers(Pseudonymizer(KEY)).resolve(ENTITIES)["MRN1"]
    c = LocalIdentifiers(Pseudonymizer(b"x" * 32)).resolve(ENTITIES)["MRN1"]
    assert a == b
    assert a.patient != c.patient
    assert -365 <= a.jitter_days <= -1
    assert set(a.studies) == {"ACC1", "ACC2"}
    assert "MRN1" not in a.patient


def test_service_answers_are_used_and_the_request_has_dashers_shape(dasher: str) -> None:
    ids = ServiceIdentifiers(dasher, timeout=2, retries=2).resolve(ENTITIES)["MRN1"]
    assert (ids.patient, ids.jitter_days) == ("SU1", -7)
    assert ids.studies == {"ACC1": "IT1", "ACC2": "IT2"}
    sent = Dasher.requests[0]["identifiers"][0]
    assert sent["id_source"] == "PatientID"
    assert sent["items"][0] == {
        "id": "ACC1",
        "id_source": "AccessionNumber",
        "id_timestamp": "2020-01-02T03:04:05Z",
    }


def test_service_is_retried_on_503(dasher: str) -> None:
    Dasher.failures_left = 2
    ids = ServiceIdentifiers(dasher, timeout=2, retries=3).resolve(ENTITIES)["MRN1"]
    assert ids.patient == "SU1"
    assert len(Dasher.requests) == 3


def test_service_down_is_a_clear_error_without_identifiers_in_it(dasher: str) -> None:
    Dasher.failures_left = 10
    with pytest.raises(IdentifierServiceError) as err:
        ServiceIdentifiers(dasher, timeout=2, retries=1).resolve(ENTITIES)
    assert "unavailable" in str(err.value)
    assert "MRN1" not in str(err.value)


def test_nothing_listening_is_a_clear_error() -> None:
    with pytest.raises(IdentifierServiceError, match="unavailable"):
        ServiceIdentifiers("http://127.0.0.1:9/x", timeout=0.5, retries=0).resolve(ENTITIES)
