"""A Hugging Face token never leaves recipelib: errors, logs, overrides, papermill parameters."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from helpers import NOTEBOOKS

import recipelib
from recipelib.errors import ConfigError, SecretError
from recipelib.names import release_name
from recipelib.redaction import holds_token, redact
from recipelib.views.papermill_guard import check_parameters

TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"


def test_a_token_typed_as_a_release_name_is_refused_without_echo():
    with pytest.raises(ConfigError) as e:
        release_name("meta-llama/Llama-3.1-8B", release=TOKEN)
    assert TOKEN not in str(e.value) and TOKEN not in repr(e.value.args) and "hf_***" in str(e.value)


def test_every_recipelib_error_masks_tokens_in_its_text():
    err = recipelib.RecipelibError(f"the server said: {TOKEN} is not allowed")
    assert TOKEN not in str(err) and TOKEN not in repr(err)


def test_log_records_of_recipelib_loggers_are_masked(caplog):
    with caplog.at_level(logging.INFO, logger="recipelib"):
        logging.getLogger("recipelib.deploy.benchmark").info("applying %s", TOKEN)
    assert caplog.records and TOKEN not in caplog.text and "hf_***" in caplog.text


def test_a_token_in_overrides_is_refused_before_any_request():
    settings = recipelib.Settings(gcs_bucket="b", artifact_registry="us-docker.pkg.dev/p/r")
    with pytest.raises(ConfigError) as e:
        recipelib.plan_benchmark(settings, "meta-llama/Llama-3.1-8B", "128/128/10",
                                 overrides={"gib_image": f"x/{TOKEN}"}, dry_run=True)
    assert e.value.field == "overrides.gib_image" and TOKEN not in str(e.value)


@pytest.mark.parametrize("parameters", [{"hf_token": "anything"}, {"release": TOKEN}, {"HF_TOKEN": ""},
                                        {"overrides": {"x": [TOKEN]}}])
def test_papermill_parameters_holding_a_token_are_refused(parameters):
    with pytest.raises(SecretError) as e:
        check_parameters(parameters)
    assert TOKEN not in str(e.value) and "HF_TOKEN" in str(e.value)


def test_ordinary_parameters_pass():
    check_parameters({"model": "meta-llama/Llama-3.1-405B", "experiments": "128/128/30000", "dry_run": True})
    assert not holds_token({"a": ["hf_short"]}) and redact("no token here") == "no token here"


def test_the_papermill_cli_refuses_a_token_parameter_and_writes_nothing(tmp_path):
    out = tmp_path / "out.ipynb"
    proc = subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOKS / "deploy.ipynb"), str(out),
                           "-p", "release", TOKEN], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and not out.exists()
    assert "SecretError" in proc.stderr and "HF_TOKEN" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
