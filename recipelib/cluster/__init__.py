"""Talking to a Kubernetes cluster: connection, releases (labelled object sets), the HF secret, cluster checks."""

from recipelib.cluster.checks import Check, check_cluster, summary
from recipelib.cluster.client import Cluster, call, connect, from_gke, from_kubeconfig
from recipelib.cluster.hf_secret import SECRET_KEY, SECRET_NAME, delete_hf_secret, ensure_hf_secret, hf_token
from recipelib.cluster.releases import Applied, Release, apply, list_releases, uninstall

__all__ = [
    "SECRET_KEY", "SECRET_NAME", "Applied", "Check", "Cluster", "Release", "apply", "call", "check_cluster", "connect",
    "delete_hf_secret", "ensure_hf_secret", "from_gke", "from_kubeconfig", "hf_token", "list_releases", "summary",
    "uninstall",
]
