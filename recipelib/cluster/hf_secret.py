"""The Hugging Face token: from the environment or a prompt, stored only in the ``hf-secret`` Secret.

The token is never a notebook parameter (papermill writes parameters into the output notebook), is
held as a ``SecretStr`` (its repr is masked), and no message or exception here ever includes it.

The local sandbox needs no token: its pods replay recorded runs and never download. There the Secret
holds a placeholder, annotated as one (:data:`PLACEHOLDER_ANNOTATION`), and nobody is asked for anything;
a real token has no business in a sandbox. :func:`setup_hf_secret` is the choice the setup notebook makes.
"""

from __future__ import annotations

import base64
import getpass
import os
import sys

from kubernetes.client import V1ObjectMeta, V1Secret
from pydantic import SecretStr

from recipelib.cluster.client import Cluster, call
from recipelib.errors import NotFoundError, SecretError

SECRET_NAME = "hf-secret"
SECRET_KEY = "hf_api_token"
SANDBOX_PLACEHOLDER = SecretStr("placeholder-for-the-local-sandbox-not-a-token")
"""What the sandbox's Secret holds: not token-shaped, so nothing mistakes it for one (or redacts it)."""
PLACEHOLDER_ANNOTATION = "recipelib.io/placeholder"
"""Set on a Secret that holds :data:`SANDBOX_PLACEHOLDER`; its value says why there is no token."""
_PLACEHOLDER_NOTE = "the local sandbox replays recorded runs and downloads nothing: no Hugging Face token needed"


def _can_prompt() -> bool:
    """Whether asking can work. In a Jupyter kernel, ipykernel swaps in its own ``getpass`` (a password box
    in JupyterLab; papermill and nbmake have none and it raises); elsewhere only a terminal can hide input,
    since the standard ``getpass`` without one falls back to reading stdin with echo."""
    if getattr(getpass.getpass, "__module__", "") != "getpass":
        return True
    return sys.stdin is not None and sys.stdin.isatty()


def hf_token(*, prompt: bool = True, env_var: str = "HF_TOKEN") -> SecretStr:
    """``$HF_TOKEN``, else an interactive prompt (Jupyter shows a password box); never echoed.

    Headless (papermill, nbmake, CI: no input box, no terminal) and with no ``$HF_TOKEN``, a
    :class:`SecretError` says what to do, instead of a crash inside ``getpass``.
    """
    value = os.environ.get(env_var, "").strip()
    if not value and prompt and _can_prompt():
        try:
            value = getpass.getpass("Hugging Face token (input hidden): ").strip()
        except (EOFError, OSError, NotImplementedError):  # ipykernel's StdinNotImplementedError is the last
            value = ""
    if not value:
        raise SecretError(
            f"no Hugging Face token: {env_var} is not set and this run cannot ask for one (papermill, nbmake and "
            f"CI have no input box or terminal). export {env_var}=hf_... before starting papermill or Jupyter, "
            "or run setup.ipynb in JupyterLab to be asked (https://huggingface.co/settings/tokens, role Read)"
        )
    if any(c.isspace() for c in value):
        raise SecretError(f"the Hugging Face token in {env_var} contains whitespace; copy it again")
    return SecretStr(value)


def ensure_hf_secret(
    cluster: Cluster, token: SecretStr, *, namespace: str | None = None, name: str = SECRET_NAME, key: str = SECRET_KEY,
    placeholder: bool = False,
) -> str:
    """Create or update the Secret the benchmark pods read; returns "created", "updated" or "unchanged".

    ``placeholder`` marks the Secret as holding no real token (the annotation :data:`PLACEHOLDER_ANNOTATION`);
    a real token written over a placeholder removes the mark.
    """
    namespace = namespace or cluster.namespace
    encoded = base64.b64encode(token.get_secret_value().encode()).decode()
    note = _PLACEHOLDER_NOTE if placeholder else None
    body = V1Secret(
        metadata=V1ObjectMeta(name=name, namespace=namespace, labels={"app.kubernetes.io/managed-by": "recipelib"},
                              annotations={PLACEHOLDER_ANNOTATION: note} if note else None),
        type="Opaque",
        data={key: encoded},
    )
    core = cluster.core
    try:
        current = call(lambda: core.read_namespaced_secret(name, namespace), f"read Secret {name}")
    except NotFoundError:
        call(lambda: core.create_namespaced_secret(namespace, body), f"create Secret {name} in {namespace}")
        return "created"
    marked = (current.metadata.annotations or {}).get(PLACEHOLDER_ANNOTATION)
    if (current.data or {}).get(key) == encoded and marked == note:
        return "unchanged"
    patch = {"data": {key: encoded}, "metadata": {"annotations": {PLACEHOLDER_ANNOTATION: note}}}
    call(lambda: core.patch_namespaced_secret(name, namespace, patch), f"update Secret {name} in {namespace}")
    return "updated"


def setup_hf_secret(cluster: Cluster, *, sandbox: bool, env_var: str = "HF_TOKEN") -> str:
    """The setup notebook's step: on the sandbox a marked placeholder (never a prompt, never the user's token);
    on a real cluster the token from ``$HF_TOKEN`` or a prompt. Returns a line saying what was done."""
    if sandbox:
        state = ensure_hf_secret(cluster, SANDBOX_PLACEHOLDER, placeholder=True)
        return f"{state}, holding a placeholder ({_PLACEHOLDER_NOTE})"
    return ensure_hf_secret(cluster, hf_token(env_var=env_var))


def delete_hf_secret(cluster: Cluster, *, namespace: str | None = None, name: str = SECRET_NAME) -> bool:
    """Remove the Secret; False if it was not there (the recipe's ``--ignore-not-found``)."""
    namespace = namespace or cluster.namespace
    try:
        call(lambda: cluster.core.delete_namespaced_secret(name, namespace), f"delete Secret {name}")
    except NotFoundError:
        return False
    return True
