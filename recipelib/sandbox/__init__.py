"""The local sandbox: a real API server, etcd and controller-manager on loopback, a node agent playing an A3
Ultra node's kubelet, and a local Cloud Storage server. The product never imports this package; the sandbox
presents itself as any cluster does (a kubeconfig context and a settings file it writes)."""

from recipelib.sandbox.control import BUCKET, Sandbox, SandboxError, SandboxStatus, main

__all__ = ["BUCKET", "Sandbox", "SandboxError", "SandboxStatus", "main"]
