"""The local sandbox: a real API server, etcd and controller-manager on loopback, a node agent playing an A3
Ultra node's kubelet, and a local Cloud Storage server. The product never imports this package; the sandbox
presents itself as any cluster does (a kubeconfig context, and a settings file marked ``SANDBOX: true`` that
it offers as the settings overlay while it runs: see :mod:`recipelib.settings`)."""

from recipelib.sandbox.cli import main
from recipelib.sandbox.control import BUCKET, CONTEXT, Sandbox, SandboxError, SandboxStatus, sandbox_root

__all__ = ["BUCKET", "CONTEXT", "Sandbox", "SandboxError", "SandboxStatus", "main", "sandbox_root"]
