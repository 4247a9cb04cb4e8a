"""Connect to a cluster: a kubeconfig context, or GKE's API (what ``gcloud ... get-credentials`` does).

Nothing here shells out: the user's machine needs neither gcloud nor kubectl. Clients are passed in
(``container_client``, ``credentials``) so tests point them at local servers.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

import recipelib.gcp as gcp
from recipelib.errors import CloudError, ClusterError, ConfigError
from recipelib.settings import Settings, overlay_path

log = logging.getLogger(__name__)


@dataclass
class Cluster:
    """An API client bound to one cluster and the namespace the user works in."""

    api: kubernetes.client.ApiClient
    namespace: str
    source: str

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    @property
    def batch(self) -> kubernetes.client.BatchV1Api:
        return kubernetes.client.BatchV1Api(self.api)

    def version(self) -> str:
        """The server's version, e.g. ``v1.31.7-gke.1265000``; also proves the connection works."""
        info = call(lambda: kubernetes.client.VersionApi(self.api).get_code(), "read the server version")
        return str(info.git_version)

    def __str__(self) -> str:
        return f"{self.source} (namespace {self.namespace})"


def _hint(status: int, reason: str) -> str:
    """What to do, by cause: a namespace quota's 403 is not a missing role (the API says which it is)."""
    if status == 401:
        return " Credentials were refused: reconnect (setup.ipynb) or refresh your login."
    if status == 403 and "exceeded quota" in reason:
        return (" A ResourceQuota of the namespace refuses it: free quota (remove finished releases with "
                "cleanup.ipynb) or ask the namespace's administrator to raise it.")
    if status == 403:
        return " Your account lacks the Kubernetes permission for this; ask for the 'container.developer' role."
    if status == 429:
        return " The API server is rate-limiting requests: wait a moment and run the cell again."
    return ""


def call(fn: Callable[[], Any], what: str) -> Any:
    """Run one API call; turn transport and HTTP failures into a ClusterError that says what failed."""
    from recipelib.errors import ConflictError, NotFoundError

    try:
        return fn()
    except ApiException as e:
        reason = _status_message(e)
        cls = {404: NotFoundError, 409: ConflictError}.get(e.status or 0, ClusterError)
        hint = _hint(e.status or 0, reason)
        raise cls(f"could not {what}: HTTP {e.status} {reason}.{hint}", status=e.status) from None
    except (Urllib3Error, OSError) as e:
        raise ClusterError(f"{unreachable(_server_of(e), _transport_reason(e))} (while trying to {what})") from None


SANDBOX_HINT = "if this is the local sandbox, start it with `python -m recipelib.sandbox start`"


def unreachable(server: str | None, reason: str) -> str:
    """The one line for a server that does not answer: where, why, and what to do."""
    where = f" at {server}" if server else ""
    if reason == "connection refused":
        return f"cannot reach the Kubernetes API{where}: connection refused; {SANDBOX_HINT}"
    return (f"cannot reach the Kubernetes API{where}: {reason}; check the cluster's address in your kubeconfig and "
            f"your network (for GKE, the cluster's authorized networks); {SANDBOX_HINT}")


def _server_of(e: BaseException) -> str | None:
    """``https://host:port`` of the connection pool a urllib3 error came from, when it says."""
    pool = getattr(e, "pool", None)
    if pool is None or not getattr(pool, "host", None):
        return None
    return f"{pool.scheme}://{pool.host}" + (f":{pool.port}" if pool.port else "")


def _transport_reason(e: BaseException) -> str:
    """What went wrong on the wire, in words: the innermost cause (``connection refused``, a timeout, TLS)."""
    seen: list[BaseException] = []
    cause: BaseException | None = e
    while cause is not None and cause not in seen:
        seen.append(cause)
        cause = getattr(cause, "reason", None) if isinstance(getattr(cause, "reason", None), BaseException) \
            else cause.__cause__ or cause.__context__
    if any(isinstance(c, ConnectionRefusedError) or "Connection refused" in str(c) for c in seen):
        return "connection refused"
    inner = seen[-1]
    return f"{type(inner).__name__}: {inner}"


def _status_message(e: ApiException) -> str:
    """The API's own ``Status.message`` (never the request body: it may carry a Secret's data)."""
    import json

    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason)
    except (ValueError, AttributeError):
        return str(e.reason)


def from_kubeconfig(
    kubeconfig: str | Path | None = None, context: str | None = None, namespace: str = "default"
) -> Cluster:
    """A cluster from a kubeconfig file (default: ``$KUBECONFIG`` or ``~/.kube/config``) and context."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else None, context=context or None, client_configuration=config
        )
    except kubernetes.config.ConfigException as e:
        raise ConfigError(
            "KUBE_CONTEXT" if context else "KUBECONFIG",
            f"cannot use kubeconfig {kubeconfig or '(default)'} context {context or '(current)'}: {e}",
        ) from None
    label = f"kubeconfig {kubeconfig or '(default)'}" + (f" context {context}" if context else "")
    return Cluster(kubernetes.client.ApiClient(config), namespace, label)


def from_gke(
    project: str,
    location: str,
    name: str,
    *,
    namespace: str = "default",
    credentials: Any = None,
    container_client: Any = None,
    private_endpoint: bool = False,
    ca_dir: Path | None = None,
) -> Cluster:
    """Endpoint and CA from GKE's ``get_cluster``, and a bearer token that refreshes itself.

    ``credentials`` default to Application Default Credentials (``gcloud auth application-default
    login`` once, or a service account on a VM / Workbench instance), from :mod:`recipelib.gcp`.
    """
    credentials = gcp.default_credentials(credentials, alternative="use a kubeconfig context instead")
    if container_client is None:
        container_client = gcp.cluster_manager_client(credentials)
    full = f"projects/{project}/locations/{location}/clusters/{name}"
    try:
        gke = container_client.get_cluster(name=full)
    except gcp.api_errors() as e:
        raise gcp.translate(
            e, f"reading GKE cluster {full}",
            role="roles/container.clusterViewer (Kubernetes Engine Cluster Viewer)", on=f"project {project}",
            api="container.googleapis.com",
            not_found=f"project {project!r} has no cluster {name!r} in location {location!r}: check CLUSTER_NAME "
                      "and CLUSTER_REGION",
        ) from None
    endpoint = gke.private_cluster_config.private_endpoint if private_endpoint else gke.endpoint
    if not endpoint:
        raise CloudError(f"GKE cluster {full} has no {'private ' if private_endpoint else ''}endpoint yet")
    ca = base64.b64decode(gke.master_auth.cluster_ca_certificate)
    ca_dir = ca_dir or Path.home() / ".cache" / "recipelib" / "gke"
    ca_dir.mkdir(parents=True, exist_ok=True)
    ca_file = ca_dir / f"{hashlib.sha256(full.encode()).hexdigest()[:16]}.crt"
    ca_file.write_bytes(ca)

    config = kubernetes.client.Configuration()
    config.host = f"https://{endpoint}"
    config.ssl_ca_cert = str(ca_file)

    def refresh(conf: kubernetes.client.Configuration) -> None:
        conf.api_key = {"authorization": f"Bearer {gcp.bearer_token(credentials)}"}

    config.refresh_api_key_hook = refresh
    refresh(config)  # the client only calls the hook once a key is set
    return Cluster(kubernetes.client.ApiClient(config), namespace, f"GKE cluster {full}")


def connect(settings: Settings, **gke_options: Any) -> Cluster:
    """The cluster the settings point at: a kubeconfig context if one is set, else GKE, else the default kubeconfig."""
    if settings.kubeconfig or settings.kube_context:
        return from_kubeconfig(settings.kubeconfig, settings.kube_context, settings.namespace)
    if settings.project_id and settings.cluster_name and settings.cluster_region:
        return from_gke(
            settings.project_id, settings.cluster_region, settings.cluster_name,
            namespace=settings.namespace, **gke_options,
        )
    _refuse_dead_tool_cluster(overlay_path())
    return from_kubeconfig(None, None, settings.namespace)


def _refuse_dead_tool_cluster(overlay: Path) -> None:
    """Name a cluster that a tool offered (the local sandbox's overlay) and that no longer answers.

    Its settings are ignored once its process is gone (:mod:`recipelib.settings`), so without this a user
    whose sandbox stopped would be told that KUBECONFIG or GCS_BUCKET is unset: true, and no help at all.
    """
    try:
        offered = yaml.safe_load(overlay.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return
    kubeconfig = offered.get("KUBECONFIG") if isinstance(offered, dict) else None
    if not isinstance(kubeconfig, str):
        return
    stale = (f" (the settings it offered in {overlay} apply again once it runs; `python -m recipelib.sandbox stop` "
             "forgets them)")
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(config_file=kubeconfig, context=offered.get("KUBE_CONTEXT") or None,
                                           client_configuration=config)
    except (kubernetes.config.ConfigException, OSError, TypeError):
        raise ClusterError(f"cannot reach the Kubernetes API of the local sandbox: its kubeconfig {kubeconfig} is "
                           f"gone; start it with `python -m recipelib.sandbox start`{stale}") from None
    url = urlsplit(config.host)
    try:
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 443), timeout=3).close()
    except ConnectionRefusedError:
        raise ClusterError(unreachable(config.host, "connection refused") + stale) from None
    except OSError as e:
        raise ClusterError(unreachable(config.host, f"{type(e).__name__}: {e}") + stale) from None
