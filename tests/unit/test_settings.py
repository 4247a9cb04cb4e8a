import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recipelib.errors import ConfigError
from recipelib.settings import MARKS, NAMES, Settings, load_settings, save_settings

SEED_NAMES = [
    "PROJECT_ID", "REGION", "CLUSTER_REGION", "CLUSTER_NAME", "GCS_BUCKET", "ARTIFACT_REGISTRY",
    "TRTLLM_IMAGE", "TRTLLM_VERSION", "TRITON_SERVER_VERSION", "KUEUE_NAME",
]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "settings.yaml"


def test_every_seed_variable_is_a_setting_under_its_name():
    assert set(SEED_NAMES) <= set(NAMES)
    assert {"NAMESPACE", "RESULTS_PREFIX"} <= set(NAMES)


def test_defaults_are_the_recipes(path):
    s = load_settings(path=path, environ={})
    assert (s.trtllm_image, s.trtllm_version, s.triton_server_version) == (
        "trtllm", "v0.17.0", "25.02-trtllm-python-py3",
    )
    assert s.namespace == "default" and s.gcs_bucket is None and s.image is None


def test_precedence_defaults_file_environment_arguments(path):
    path.write_text("GCS_BUCKET: from-file\nREGION: europe-west4\nNAMESPACE: file-ns\n")
    env = {"GCS_BUCKET": "from-env", "NAMESPACE": "env-ns"}
    s = load_settings(path=path, environ=env, namespace="arg-ns")
    assert s.region == "europe-west4"  # file over default
    assert s.gcs_bucket == "from-env"  # environment over file
    assert s.namespace == "arg-ns"  # argument over environment
    assert load_settings(path=path, environ=env, GCS_BUCKET="upper-arg").gcs_bucket == "upper-arg"
    assert load_settings(path=path, environ=env, gcs_bucket="").gcs_bucket == "from-env"  # empty = not given


def test_save_then_load_round_trips_under_the_recipes_names(path):
    s = load_settings(
        path=path, environ={}, project_id="my-project", gcs_bucket="my-bucket",
        artifact_registry="us-central1-docker.pkg.dev/my-project/my-repo",
    )
    save_settings(s, path)
    text = path.read_text()
    assert "GCS_BUCKET: my-bucket" in text and "gcs_bucket" not in text
    assert load_settings(path=path, environ={}) == s
    assert s.image == "us-central1-docker.pkg.dev/my-project/my-repo/trtllm:v0.17.0"


def test_unknown_key_in_settings_file_is_named(path):
    path.write_text("GCS_BUCKET: b-1\nTP-SIZE: 8\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path=path, environ={})
    assert e.value.field == "TP-SIZE"
    assert "unknown setting" in str(e.value) and "GCS_BUCKET" in str(e.value)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("GCS_BUCKET", "gs://my-bucket", "without the gs:// prefix: 'my-bucket'"),
        ("GCS_BUCKET", "my-bucket/results", "put paths in RESULTS_PREFIX"),
        ("GCS_BUCKET", "My_Bucket", "is not a bucket name"),
        ("GCS_BUCKET", "ab", "is not a bucket name"),
        ("GCS_BUCKET", "-bucket", "is not a bucket name"),
        ("GCS_BUCKET", "google-results", "cannot start with 'goog'"),
        ("GCS_BUCKET", "192.168.5.4", "IP address"),
        ("ARTIFACT_REGISTRY", "us-central1-docker.pkg.dev/my-project", "LOCATION-docker.pkg.dev/PROJECT_ID/REPOSITORY"),
        ("ARTIFACT_REGISTRY", "gcr.io/my-project/repo", "LOCATION-docker.pkg.dev"),
        ("ARTIFACT_REGISTRY", "https://us-docker.pkg.dev/my-project/repo", "drop the scheme"),
        ("REGION", "us-central1-a", "region name"),
        ("REGION", "US-CENTRAL1", "region name"),
        ("CLUSTER_REGION", "mars", "region or zone"),
        ("PROJECT_ID", "My Project", "project ID"),
        ("NAMESPACE", "Team_A", "namespace name"),
        ("RESULTS_PREFIX", "gs://b/x", "relative path"),
        ("RESULTS_PREFIX", "/abs", "relative path"),
        ("RESULTS_PREFIX", "a/../b", "relative path"),
        ("TRTLLM_VERSION", "v0.17.0; rm -rf /", "image tag"),
        ("KUEUE_NAME", "Queue One", "LocalQueue name"),
    ],
)
def test_bad_values_name_the_field_and_what_is_allowed(path, field, value, expected):
    with pytest.raises(ConfigError) as e:
        load_settings(path=path, environ={field: value})
    assert e.value.field == field
    assert expected in str(e.value)


def test_good_values_pass(path):
    s = load_settings(
        path=path, environ={},
        project_id="proj-123456", region="us-central1", cluster_region="europe-west4-b", cluster_name="a3u",
        gcs_bucket="results.example-bucket", artifact_registry="us-docker.pkg.dev/proj-123456/images",
        kueue_name="a3ultra", results_prefix="team/bench",
    )
    assert s.cluster_region == "europe-west4-b"


def test_require_names_every_missing_setting(path):
    s = load_settings(path=path, environ={})
    with pytest.raises(ConfigError) as e:
        s.require("GCS_BUCKET", "ARTIFACT_REGISTRY", purpose="deploying")
    assert e.value.field == "GCS_BUCKET, ARTIFACT_REGISTRY"
    assert "deploying" in str(e.value) and "export GCS_BUCKET" in str(e.value)


def test_settings_file_that_is_not_a_mapping(path):
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(path=path, environ={})


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().namespace = "x"  # type: ignore[misc]


# --- marks and the overlay a tool offers (the local sandbox writes one; see recipelib.settings) -----------


@pytest.fixture
def overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No settings file of the user's, no cluster in the environment, an overlay named by $RECIPELIB_OVERLAY."""
    for name in ("KUBECONFIG", "KUBE_CONTEXT", "CLUSTER_NAME", "GCS_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "absent.yaml"))
    monkeypatch.setenv("RECIPELIB_OVERLAY", str(tmp_path / "overlay.yaml"))
    offered = Settings(gcs_bucket="tool-bucket", gcs_endpoint="http://127.0.0.1:4443", kube_context="tool",
                       sandbox=True, note="offered by a tool")
    return save_settings(offered, tmp_path / "overlay.yaml", pid=os.getpid(), comment="a tool's")


def test_marks_are_data_not_settings(path):
    save_settings(Settings(gcs_bucket="b-1", sandbox=True, note="a replay"), path)
    written = yaml.safe_load(path.read_text())
    assert (written["GCS_BUCKET"], written["SANDBOX"], written["NOTE"]) == ("b-1", True, "a replay")
    loaded = load_settings(path=path, environ={})
    assert (loaded.sandbox, loaded.note, loaded.gcs_bucket) == (True, "a replay", "b-1")
    assert not set(MARKS) & set(NAMES) and "SANDBOX" not in loaded.as_env()
    assert load_settings(path=path, environ={"SANDBOX": "false"}).sandbox  # a mark never comes from the environment


@pytest.mark.parametrize(("text", "field"), [("SANDBOX: 'yes'\n", "SANDBOX"), ("NOTE: [a]\n", "NOTE"),
                                             ("PID: -3\n", "PID"), ("PID: true\n", "PID")])
def test_bad_marks_are_named(path, text, field):
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(path=path, environ={})
    assert e.value.field == field


def test_the_overlay_stands_in_for_a_missing_settings_file(overlay):
    s = load_settings()
    assert (s.sandbox, s.note, s.gcs_bucket, s.kube_context) == (True, "offered by a tool", "tool-bucket", "tool")
    assert load_settings(namespace="mine").namespace == "mine"  # arguments still win


def test_the_overlay_is_whole_or_nothing(overlay, tmp_path, monkeypatch):
    user = tmp_path / "user.yaml"
    user.write_text("GCS_BUCKET: user-bucket\n")
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(user))
    s = load_settings()  # the user's file wins, and nothing of the overlay is merged under it
    assert (s.sandbox, s.gcs_bucket, s.gcs_endpoint, s.kube_context) == (False, "user-bucket", None, None)
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "absent.yaml"))
    assert not load_settings(environ={"KUBE_CONTEXT": "prod"}).sandbox  # a cluster named elsewhere
    assert not load_settings(cluster_name="prod").sandbox
    assert not load_settings(path=tmp_path / "absent.yaml").sandbox  # an explicit path is read as it is
    monkeypatch.delenv("RECIPELIB_OVERLAY")
    assert not load_settings().sandbox  # a named settings file, even absent, keeps tests hermetic


def test_an_overlay_whose_process_is_gone_is_stale(overlay):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    text = overlay.read_text().replace(f"PID: {os.getpid()}", f"PID: {dead.pid}")
    overlay.write_text(text)
    assert not load_settings().sandbox and load_settings().gcs_bucket is None


def test_the_sandboxs_settings_are_never_saved_as_the_users(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPELIB_SETTINGS", str(tmp_path / "mine.yaml"))
    sandboxed = Settings(sandbox=True, namespace="default")
    with pytest.raises(ConfigError, match="sandbox's settings") as e:
        save_settings(sandboxed)
    assert e.value.field == "settings" and not (tmp_path / "mine.yaml").exists()
    assert save_settings(sandboxed, tmp_path / "overlay.yaml").exists()  # a tool's own overlay may hold them
