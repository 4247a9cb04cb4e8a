"""The Hugging Face token: from the environment or a prompt, stored only in the ``hf-secret`` Secret.

The token is never a notebook parameter (papermill writes parameters into the output notebook), is
held as a ``SecretStr`` (its repr is masked), and no message or exception here ever includes it.
"""

from __future__ import annotations

import base64
import getpass
import os

from kubernetes.client import V1ObjectMeta, V1Secret
from pydantic import SecretStr

from recipelib.cluster.client import Cluster, call
from recipelib.errors import NotFoundError, SecretError

SECRET_NAME = "hf-secret"
SECRET_KEY = "hf_api_token"


def hf_token(*, prompt: bool = True, env_var: str = "HF_TOKEN") -> SecretStr:
    """``$HF_TOKEN``, else an interactive prompt (Jupyter shows a password box); never echoed."""
    value = os.environ.get(env_var, "").strip()
    if not value and prompt:
        try:
            value = getpass.getpass("Hugging Face token (input hidden): ").strip()
        except (EOFError, OSError):
            value = ""
    if not value:
        raise SecretError(
            f"no Hugging Face token: export {env_var} before starting Jupyter or papermill, or run the setup "
            "notebook interactively to be asked for it (https://huggingface.co/settings/tokens, role Read)"
        )
    if any(c.isspace() for c in value):
        raise SecretError(f"the Hugging Face token in {env_var} contains whitespace; copy it again")
    return SecretStr(value)


def ensure_hf_secret(
    cluster: Cluster, token: SecretStr, *, namespace: str | None = None, name: str = SECRET_NAME, key: str = SECRET_KEY
) -> str:
    """Create or update the Secret the benchmark pods read; returns "created", "updated" or "unchanged"."""
    namespace = namespace or cluster.namespace
    encoded = base64.b64encode(token.get_secret_value().encode()).decode()
    body = V1Secret(
        metadata=V1ObjectMeta(name=name, namespace=namespace, labels={"app.kubernetes.io/managed-by": "recipelib"}),
        type="Opaque",
        data={key: encoded},
    )
    core = cluster.core
    try:
        current = call(lambda: core.read_namespaced_secret(name, namespace), f"read Secret {name}")
    except NotFoundError:
        call(lambda: core.create_namespaced_secret(namespace, body), f"create Secret {name} in {namespace}")
        return "created"
    if (current.data or {}).get(key) == encoded:
        return "unchanged"
    patch = {"data": {key: encoded}}
    call(lambda: core.patch_namespaced_secret(name, namespace, patch), f"update Secret {name} in {namespace}")
    return "updated"


def delete_hf_secret(cluster: Cluster, *, namespace: str | None = None, name: str = SECRET_NAME) -> bool:
    """Remove the Secret; False if it was not there (the recipe's ``--ignore-not-found``)."""
    namespace = namespace or cluster.namespace
    try:
        call(lambda: cluster.core.delete_namespaced_secret(name, namespace), f"delete Secret {name}")
    except NotFoundError:
        return False
    return True
