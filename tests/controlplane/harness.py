"""A real, local Kubernetes control plane for the tests: etcd, kube-apiserver and
kube-controller-manager built from Go modules (see ``build.py``).

``ControlPlane.start()`` generates a throw-away PKI (cluster CA, API server
serving certificate, admin and controller-manager client certificates, service
account signing key), starts the three processes on free 127.0.0.1 ports with
data in a temporary directory, writes an admin kubeconfig and waits until
``/readyz`` answers ok and the controller manager has created the ``default``
ServiceAccount. ``stop()`` terminates the processes (controller manager, API
server, then etcd) and removes the temporary directory unless asked to keep it.

There is no kubelet: Pods are run by the test double in ``fakenode.py``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from certificates import CertificateAuthority, name, write_pem
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from . import build

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
KCM_CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "ttl-after-finished-controller",
    "cronjob-controller",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "clusterrole-aggregation-controller",
)


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or become ready."""


# --------------------------------------------------------------------------- PKI


@dataclass
class PKI:
    """File paths of the generated credentials (all PEM)."""

    directory: Path
    ca_cert: Path = field(init=False)
    ca_key: Path = field(init=False)
    serving_cert: Path = field(init=False)
    serving_key: Path = field(init=False)
    admin_cert: Path = field(init=False)
    admin_key: Path = field(init=False)
    kcm_cert: Path = field(init=False)
    kcm_key: Path = field(init=False)
    sa_key: Path = field(init=False)
    sa_pub: Path = field(init=False)

    def __post_init__(self) -> None:
        d = self.directory
        self.ca_cert, self.ca_key = d / "ca.crt", d / "ca.key"
        self.serving_cert, self.serving_key = d / "apiserver.crt", d / "apiserver.key"
        self.admin_cert, self.admin_key = d / "admin.crt", d / "admin.key"
        self.kcm_cert, self.kcm_key = d / "kube-controller-manager.crt", d / "kcm.key"
        self.sa_key, self.sa_pub = d / "sa.key", d / "sa.pub"

    @classmethod
    def generate(cls, directory: Path) -> PKI:
        directory.mkdir(parents=True, exist_ok=True)
        pki = cls(directory)
        ca = CertificateAuthority("sendit-test-ca")
        write_pem(pki.ca_key, ca.key)
        write_pem(pki.ca_cert, ca.cert)

        def leaf(cert_path: Path, key_path: Path, subject: x509.Name, usage, sans=()) -> None:
            key, cert = ca.issue(subject, [usage], sans)
            write_pem(key_path, key)
            write_pem(cert_path, cert)

        dns = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        sans = [x509.DNSName(n) for n in dns] + [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address(SERVICE_IP)),
        ]
        leaf(
            pki.serving_cert,
            pki.serving_key,
            name("kube-apiserver"),
            ExtendedKeyUsageOID.SERVER_AUTH,
            sans,
        )
        leaf(
            pki.admin_cert,
            pki.admin_key,
            name("admin", "system:masters"),
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        # The controller manager runs every controller under its own identity
        # (--use-service-account-credentials=false), so it needs broad rights.
        kcm = name("system:kube-controller-manager", "system:masters")
        leaf(pki.kcm_cert, pki.kcm_key, kcm, ExtendedKeyUsageOID.CLIENT_AUTH)

        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_pem(pki.sa_key, sa_key)
        pki.sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return pki


# ----------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_kubeconfig(
    path: Path,
    server: str,
    ca_file: Path,
    *,
    user: str,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    """Write a one-context kubeconfig (JSON is valid YAML) and return its path."""
    creds: dict[str, str] = {}
    if client_cert and client_key:
        creds = {"client-certificate": str(client_cert), "client-key": str(client_key)}
    if token:
        creds["token"] = token
    context: dict[str, str] = {"cluster": "sendit-test", "user": user}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sendit-test",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": "sendit-test", "context": context}],
        "current-context": "sendit-test",
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the test process dies (even by SIGKILL), so a
    killed pytest leaves no etcd / kube-apiserver behind (Linux prctl)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# ------------------------------------------------------------------ control plane


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager as local processes.

    Public attributes (the ``kube_cluster`` fixture contract): ``kubeconfig``,
    ``server``, ``ca_file``, plus ``kubectl()`` and ``token_kubeconfig()``.
    """

    def __init__(self, bin_dir: Path | None = None, workdir: Path | None = None, keep=False):
        self.bin_dir = Path(bin_dir) if bin_dir else build.bin_dir()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sendit-controlplane-"))
        self.keep = keep
        self.pki: PKI | None = None
        self.server = ""
        self.ca_file = self.workdir / "pki" / "ca.crt"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.etcd_url = ""
        self.ready_seconds: float | None = None
        self._procs: list[_Proc] = []
        self._token_seq = 0

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout: float = 60.0) -> ControlPlane:
        missing = build.missing_binaries(self.bin_dir)
        if missing:
            raise ControlPlaneError(f"binaries {missing} are missing from {self.bin_dir}")
        started = time.monotonic()
        deadline = started + timeout
        self.pki = PKI.generate(self.workdir / "pki")
        self.ca_file = self.pki.ca_cert
        try:
            self._start_etcd(deadline)
            self._start_apiserver(deadline)
            self._start_kcm()
            self._wait_default_service_account(deadline)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        for proc in reversed(self._procs):
            self._terminate(proc)
        self._procs.clear()
        if not self.keep and self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- processes ---------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> _Proc:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        proc = _Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    @staticmethod
    def _terminate(proc: _Proc, grace: float = 10.0) -> None:
        if proc.popen.poll() is not None:
            return
        try:
            os.killpg(proc.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(5)

    def _check_alive(self, proc: _Proc) -> None:
        code = proc.popen.poll()
        if code is not None:
            raise ControlPlaneError(
                f"{proc.name} exited with status {code} during start-up; log {proc.log}:\n"
                f"{proc.tail()}"
            )

    def _start_etcd(self, deadline: float) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        data = self.workdir / "etcd"
        proc = self._spawn(
            "etcd",
            [
                "--name=sendit-test",
                f"--data-dir={data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=sendit-test=http://127.0.0.1:{peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        while True:
            self._check_alive(proc)
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=1) as resp:
                    if json.loads(resp.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"etcd not healthy in time; log:\n{proc.tail()}")
            time.sleep(0.1)

    def restart_apiserver(self, down: float, timeout: float = 60.0) -> None:
        """Kill kube-apiserver (SIGKILL), leave it down for `down` seconds, start it again on
        the same port and etcd: every client's kubeconfig still points at it."""
        (old,) = [p for p in self._procs if p.name == "kube-apiserver"]
        os.killpg(old.popen.pid, signal.SIGKILL)
        old.popen.wait(10)
        self._procs.remove(old)
        time.sleep(down)
        port = int(self.server.rsplit(":", 1)[1])
        self._start_apiserver(time.monotonic() + timeout, port)

    def _start_apiserver(self, deadline: float, port: int | None = None) -> None:
        assert self.pki is not None
        pki = self.pki
        port = port or free_port()
        self.server = f"https://127.0.0.1:{port}"
        proc = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={self.etcd_url}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                "--endpoint-reconciler-type=none",
                "--v=1",
            ],
        )
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        last = ""
        while True:
            self._check_alive(proc)
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=2) as r:
                    if r.status == 200:
                        break
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")[-2000:]
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"kube-apiserver /readyz not ok in time ({last}); log:\n{proc.tail()}"
                )
            time.sleep(0.2)
        write_kubeconfig(
            self.kubeconfig,
            self.server,
            pki.ca_cert,
            user="admin",
            client_cert=pki.admin_cert,
            client_key=pki.admin_key,
        )

    def _start_kcm(self) -> None:
        assert self.pki is not None
        pki = self.pki
        kcm_kubeconfig = write_kubeconfig(
            self.workdir / "kube-controller-manager.kubeconfig",
            self.server,
            pki.ca_cert,
            user="system:kube-controller-manager",
            client_cert=pki.kcm_cert,
            client_key=pki.kcm_key,
        )
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kcm_kubeconfig}",
                f"--controllers={','.join(KCM_CONTROLLERS)}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--secure-port=0",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--concurrent-job-syncs=5",
                "--v=1",
            ],
        )

    def _wait_default_service_account(self, deadline: float) -> None:
        kcm = self._procs[-1]
        while True:
            self._check_alive(kcm)
            res = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            if res.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    "the default ServiceAccount never appeared (kube-controller-manager's "
                    f"serviceaccount controller); kubectl: {res.stderr}\nlog:\n{kcm.tail()}"
                )
            time.sleep(0.2)

    # -- client helpers ----------------------------------------------------
    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, kubeconfig=None
    ) -> subprocess.CompletedProcess:
        """Run ``kubectl`` against this cluster (admin credentials by default)."""
        cmd = ["kubectl", f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=120)
        if check and res.returncode != 0:
            raise subprocess.CalledProcessError(res.returncode, cmd, res.stdout, res.stderr)
        return res

    def create_token(self, namespace: str, service_account: str, duration: str = "24h") -> str:
        """Mint a ServiceAccount token through the TokenRequest API."""
        res = self.kubectl(
            "create", "token", service_account, "-n", namespace, f"--duration={duration}"
        )
        return res.stdout.strip()

    def token_kubeconfig(
        self, namespace: str, service_account: str, path: Path | None = None
    ) -> Path:
        """A kubeconfig authenticating as ``system:serviceaccount:<ns>:<sa>``."""
        token = self.create_token(namespace, service_account)
        if path is None:
            self._token_seq += 1
            path = (
                self.workdir
                / "tokens"
                / f"{namespace}.{service_account}.{self._token_seq}.kubeconfig"
            )
        return write_kubeconfig(
            Path(path),
            self.server,
            self.ca_file,
            user=f"system:serviceaccount:{namespace}:{service_account}",
            token=token,
            namespace=namespace,
        )

    def api_client(self, kubeconfig: Path | None = None):
        """A ``kubernetes.client.ApiClient`` for this cluster (admin by default)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def logs(self, component: str) -> str:
        """The log of ``etcd``, ``kube-apiserver`` or ``kube-controller-manager``."""
        return (self.workdir / "logs" / f"{component}.log").read_text(errors="replace")
