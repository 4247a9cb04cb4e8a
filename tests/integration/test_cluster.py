"""Connecting: a kubeconfig context, and GKE's API as ``get-credentials`` does it.

GKE's control-plane API cannot run here, so a small HTTP server answers the one REST call the
google-cloud-container client makes (``GET /v1/projects/P/locations/L/clusters/C``) the way GKE does:
the cluster resource in camelCase JSON, or Google's error envelope with 403/404. The endpoint and CA it
returns are the real local kube-apiserver's, so the connection that follows is real.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from recipelib.cluster import connect, from_gke, from_kubeconfig
from recipelib.errors import CloudError, ConfigError
from recipelib.settings import load_settings


class FakeGKE(BaseHTTPRequestHandler):
    clusters: ClassVar[dict[str, dict]] = {}
    denied: ClassVar[set[str]] = set()
    seen_auth: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("Authorization", ""))
        path = self.path.split("?")[0].removeprefix("/v1/")
        if path in self.denied:
            self._send(403, {"error": {"code": 403, "status": "PERMISSION_DENIED",
                                       "message": f"Required 'container.clusters.get' permission for '{path}'."}})
        elif path in self.clusters:
            self._send(200, self.clusters[path])
        else:
            self._send(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": f"Not found: {path}."}})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def gke(kube):
    if not kube.kubeconfig or "recipelib-local" not in (kube.context or ""):
        pytest.skip("the GKE fake needs the local API server's CA and token")
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    FakeGKE.clusters = {
        "projects/my-project/locations/us-central1/clusters/a3u": {
            "name": "a3u",
            "endpoint": cluster["server"].removeprefix("https://"),
            "masterAuth": {"clusterCaCertificate": cluster["certificate-authority-data"]},
            "status": "RUNNING",
        }
    }
    FakeGKE.denied = {"projects/locked/locations/us-central1/clusters/a3u"}
    FakeGKE.seen_auth = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGKE)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", token
    server.shutdown()


class RefreshingCredentials:
    """google-auth's Credentials contract as the client uses it: ``valid``, ``token``, ``refresh``."""

    def __init__(self, token: str) -> None:
        self._token = token
        self.token: str | None = None
        self.refreshes = 0

    @property
    def valid(self) -> bool:
        return self.token is not None

    def refresh(self, request) -> None:
        self.refreshes += 1
        self.token = self._token

    def before_request(self, request, method, url, headers) -> None:
        if not self.valid:
            self.refresh(request)
        headers["authorization"] = f"Bearer {self.token}"


def container_client(url: str, credentials):
    from google.cloud import container_v1

    return container_v1.ClusterManagerClient(
        credentials=credentials, transport="rest", client_options={"api_endpoint": url}
    )


def test_gke_credentials_connect_to_the_cluster_without_gcloud(gke, tmp_path):
    url, token = gke
    creds = RefreshingCredentials(token)
    cluster = from_gke("my-project", "us-central1", "a3u", credentials=creds,
                       container_client=container_client(url, creds), ca_dir=tmp_path)
    assert cluster.version() == "v1.20.2"
    assert cluster.source == "GKE cluster projects/my-project/locations/us-central1/clusters/a3u"
    assert creds.refreshes == 1  # the bearer token came from the credentials, not a kubeconfig
    assert FakeGKE.seen_auth == [f"Bearer {token}"]
    assert next(iter(tmp_path.glob("*.crt"))).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_settings_choose_gke_when_no_kubeconfig_is_set(gke, tmp_path):
    url, token = gke
    creds = RefreshingCredentials(token)
    settings = load_settings(path=tmp_path / "s.yaml", environ={}, project_id="my-project",
                             cluster_region="us-central1", cluster_name="a3u")
    cluster = connect(settings, credentials=creds, container_client=container_client(url, creds), ca_dir=tmp_path)
    assert cluster.version() == "v1.20.2"


def test_gke_permission_denied_names_the_role(gke, tmp_path):
    url, token = gke
    creds = RefreshingCredentials(token)
    with pytest.raises(CloudError, match=r"roles/container.clusterViewer"):
        from_gke("locked", "us-central1", "a3u", credentials=creds, container_client=container_client(url, creds))


def test_gke_cluster_not_found_names_the_settings(gke, tmp_path):
    url, token = gke
    creds = RefreshingCredentials(token)
    with pytest.raises(CloudError, match="CLUSTER_NAME and CLUSTER_REGION"):
        from_gke("my-project", "us-east5", "a3u", credentials=creds, container_client=container_client(url, creds))


def test_kubeconfig_context(kube):
    cluster = from_kubeconfig(kube.kubeconfig, kube.context, "default")
    assert cluster.version().startswith("v1.")


def test_a_context_that_does_not_exist_names_the_setting(kube):
    with pytest.raises(ConfigError) as e:
        from_kubeconfig(kube.kubeconfig, "no-such-context")
    assert e.value.field == "KUBE_CONTEXT"


def test_ca_is_written_as_given(gke, tmp_path):
    url, token = gke
    creds = RefreshingCredentials(token)
    from_gke("my-project", "us-central1", "a3u", credentials=creds, container_client=container_client(url, creds),
             ca_dir=tmp_path)
    ca_b64 = next(iter(FakeGKE.clusters.values()))["masterAuth"]["clusterCaCertificate"]
    assert next(iter(tmp_path.glob("*.crt"))).read_bytes() == base64.b64decode(ca_b64)
