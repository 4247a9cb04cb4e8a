"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

Used by the tests and the local sandbox. The binaries are built once from Debian's source package by
``build-kube.sh`` (no registry we can reach ships them) and cached in ``~/.cache/recipelib``. There is
no kubelet: pods stay Pending unless a node agent plays one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from recipelib.errors import RecipelibError
from recipelib.sandbox.gcs import free_port

log = logging.getLogger(__name__)

KUBE_VERSION = "v1.20.2"
BUILD_SCRIPT = Path(__file__).with_name("build-kube.sh")


def cache_dir() -> Path:
    return Path(os.environ.get("RECIPELIB_KUBE_CACHE") or Path.home() / ".cache" / "recipelib" / f"kube-{KUBE_VERSION}")


def ensure_binaries(build: bool = True) -> Path:
    """The cached binaries' folder; builds them first (about 4 minutes, needs root for apt) if missing."""
    cache = cache_dir()
    if (cache / "kube-apiserver").exists() and (cache / "kube-controller-manager").exists():
        return cache
    if not build:
        raise RecipelibError(f"kube-apiserver is not built: run bash {BUILD_SCRIPT} (about 4 minutes)")
    log.warning("building kube-apiserver %s from Debian's source package (once, about 4 minutes)", KUBE_VERSION)
    subprocess.run(["bash", str(BUILD_SCRIPT), str(cache)], check=True)
    return cache


def _etcd() -> str:
    found = shutil.which("etcd")
    if not found:
        raise RecipelibError("etcd is not installed: apt-get install etcd-server (Debian)")
    return found


def _write_certs(d: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1/localhost, and the service-account key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem_key(k: rsa.RSAPrivateKey) -> bytes:
        return k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, srv_key, sa_key = key(), key(), key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recipelib-local-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    import ipaddress

    srv = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name).public_key(srv_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            ]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.crt").write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(pem_key(srv_key))
    (d / "sa.key").write_bytes(pem_key(sa_key))
    (d / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@dataclass
class LocalKube:
    """One control plane whose state lives in ``root``; ``kubeconfig`` is written there when started.

    ``detach`` starts the servers in their own session, so that they outlive the process that started
    them (the sandbox's CLI) and a Ctrl-C in its terminal does not reach them; ``pids`` names them.
    """

    root: Path
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    context_name: str = "recipelib-local"
    detach: bool = False
    ready_excludes: tuple[str, ...] = ()
    """``/readyz`` checks not waited for, e.g. ``poststarthook/rbac/bootstrap-roles`` where every client is
    in ``system:masters`` (authorised before RBAC is asked) and a second matters."""
    disabled_admission: tuple[str, ...] = ("ServiceAccount",)
    """Admission plugins turned off; ServiceAccount always (pods need no service account token here)."""
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def context(self) -> str:
        return self.context_name

    @property
    def pids(self) -> dict[str, int]:
        """The running servers' process ids by name (etcd, kube-apiserver, kube-controller-manager)."""
        return {Path(str(p.args[0])).name: p.pid for p in self._procs}

    def _spawn(self, name: str, argv: list[str]) -> None:
        logfile = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        self._procs.append(subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, cwd=self.root,
                                            start_new_session=self.detach))
        logfile.close()

    def start(self, timeout: float = 60.0) -> LocalKube:
        bins = ensure_binaries()
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / "ca.crt").exists():
            _write_certs(self.root)
        (self.root / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')
        self.kubeconfig.write_text(self._kubeconfig_text())
        self.kubeconfig.chmod(0o600)
        etcd_port, peer_port = free_port(), free_port()
        self._spawn("etcd", [
            _etcd(), "--data-dir", str(self.root / "etcd"), "--name", "recipelib",
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"recipelib=http://127.0.0.1:{peer_port}",
        ])
        r = str(self.root)
        self._spawn("kube-apiserver", [
            str(bins / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={r}/server.crt", f"--tls-private-key-file={r}/server.key",
            f"--client-ca-file={r}/ca.crt", f"--token-auth-file={r}/tokens.csv",
            f"--service-account-key-file={r}/sa.pub", f"--service-account-signing-key-file={r}/sa.key",
            "--service-account-issuer=https://kubernetes.default.svc", "--authorization-mode=Node,RBAC",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            f"--disable-admission-plugins={','.join(self.disabled_admission)}", "--enable-priority-and-fairness=false",
            # pod logs: the API server calls a node agent's kubelet port on the node's InternalIP and checks
            # its certificate against our CA (the agent serves this server's own certificate)
            f"--kubelet-certificate-authority={r}/ca.crt", "--kubelet-preferred-address-types=InternalIP",
        ])
        self._wait_ready(timeout)
        self._spawn("kube-controller-manager", [
            str(bins / "kube-controller-manager"), f"--kubeconfig={self.kubeconfig}",
            f"--service-account-private-key-file={r}/sa.key", f"--root-ca-file={r}/ca.crt",
            "--leader-elect=false", "--port=0", "--secure-port=0", "--use-service-account-credentials=false",
            "--controllers=*,-serviceaccount-token",
        ])
        return self

    def _kubeconfig_text(self) -> str:
        import base64

        ca = base64.b64encode((self.root / "ca.crt").read_bytes()).decode()
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": self.context,
            "clusters": [{"name": self.context, "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": self.context, "context": {"cluster": self.context, "user": "admin"}}],
        })

    def _wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.root / "ca.crt"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self._procs:
                if p.poll() is not None:
                    self.stop()
                    raise RecipelibError(f"{p.args[0]} exited with {p.returncode}; see the logs in {self.root}")
            query = "&".join(f"exclude={name}" for name in self.ready_excludes)
            req = urllib.request.Request(f"{self.url}/readyz?{query}",
                                         headers={"Authorization": f"Bearer {self.token}"})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RecipelibError(f"kube-apiserver was not ready within {timeout:.0f}s; see {self.root}/kube-apiserver.log")

    def stop(self) -> None:
        """One at a time, clients first: an API server whose etcd is already gone takes 10 s to give up."""
        for p in reversed(self._procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._procs.clear()

    def __enter__(self) -> LocalKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
