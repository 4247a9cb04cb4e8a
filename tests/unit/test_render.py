"""Rendering: golden files for the documented recipes, plus the properties every object must have."""

import json
import os

import pytest
from helpers import TESTS

from recipelib.deploy import deploy, plan_benchmark
from recipelib.deploy.render import render_benchmark, to_yaml
from recipelib.deploy.validate import check_version, validate_objects
from recipelib.errors import ConfigError, ManifestError
from recipelib.settings import load_settings

HERE = TESTS
GOLDEN = HERE / "golden"


@pytest.fixture(autouse=True)
def fixed_launcher(monkeypatch):
    monkeypatch.setenv("RECIPELIB_LAUNCHER", str(HERE / "fixtures" / "launcher"))


@pytest.fixture
def settings(tmp_path):
    return load_settings(
        path=tmp_path / "none.yaml", environ={},
        gcs_bucket="my-results", artifact_registry="us-central1-docker.pkg.dev/my-project/my-repo",
    )


def by_kind(objects):
    return {o["kind"] + ("/" + o["metadata"]["name"].rsplit("-", 1)[-1] if o["kind"] == "ConfigMap" else ""): o
            for o in objects}


@pytest.mark.parametrize(
    ("golden", "kwargs", "extra"),
    [
        ("recipe-405b.yaml", {"model": "meta-llama/Llama-3.1-405B"}, {}),
        ("405b-nvidia-sweep-kueue.yaml", {"model": "meta-llama/Llama-3.1-405B", "experiments": "nvidia-sweep"},
         {"kueue_name": "a3ultra"}),
        ("8b-no-rdma.yaml", {"model": "meta-llama/Llama-3.1-8B", "experiments": "128/128/1000",
                             "overrides": {"rdma": False}}, {}),
    ],
)
def test_golden_manifests(tmp_path, golden, kwargs, extra):
    settings = load_settings(
        path=tmp_path / "none.yaml", environ={}, gcs_bucket="my-results",
        artifact_registry="us-central1-docker.pkg.dev/my-project/my-repo", **extra,
    )
    plan = plan_benchmark(settings, user="alice", **kwargs)
    text = "---\n".join(to_yaml(o) for o in render_benchmark(plan))
    path = GOLDEN / golden
    if os.environ.get("RECIPELIB_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"rendered manifests differ from {path}; RECIPELIB_UPDATE_GOLDEN=1 to accept"


def test_a_benchmark_is_a_job_that_ends_never_a_deployment(settings):
    objects = render_benchmark(plan_benchmark(settings, "meta-llama/Llama-3.1-405B", user="alice"))
    kinds = [o["kind"] for o in objects]
    assert kinds == ["ConfigMap", "ConfigMap", "Job"]
    job = objects[2]
    assert job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert spec["backoffLimit"] == 1 and spec["activeDeadlineSeconds"] > 0 and spec["ttlSecondsAfterFinished"] > 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert "suspend" not in spec and "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]


def test_every_object_is_labelled_with_the_release(settings):
    plan = plan_benchmark(settings, "meta-llama/Llama-3.1-405B", user="alice")
    for obj in render_benchmark(plan):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "recipelib"
        assert labels["app.kubernetes.io/instance"] == plan.release == "alice-llama-3-1-405b"
        assert obj["metadata"]["namespace"] == "default"


def test_a3_ultra_pod_has_what_the_recipes_chart_gives_it(settings):
    job = render_benchmark(plan_benchmark(settings, "meta-llama/Llama-3.1-405B", user="alice"))[2]
    pod = job["spec"]["template"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["gke-gcsfuse/volumes"] == "true"
    nets = json.loads(annotations["networking.gke.io/interfaces"])
    assert [n["network"] for n in nets] == ["default", "gvnic-1"] + [f"rdma-{i}" for i in range(8)]
    spec = pod["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["results"]["csi"] == {
        "driver": "gcsfuse.csi.storage.gke.io",
        "volumeAttributes": {"bucketName": "my-results", "mountOptions": "implicit-dirs"},
    }
    assert volumes["shared-memory"]["emptyDir"]["medium"] == "Memory"
    assert volumes["local-ssd"]["hostPath"]["path"] == "/mnt/stateful_partition/kube-ephemeral-ssd"
    assert spec["initContainers"][0]["name"] == "nccl-plugin-installer"
    (container,) = spec["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert container["image"] == "us-central1-docker.pkg.dev/my-project/my-repo/trtllm:v0.17.0"
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-secret", "key": "hf_api_token"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/dev/shm", "/ssd", "/gcs", "/usr/local/gib", "/workload/launcher", "/workload/config"} <= mounts


def test_rdma_switch_removes_multi_network_and_nccl_plugin(settings):
    plan = plan_benchmark(settings, "meta-llama/Llama-3.1-405B", user="alice", overrides={"rdma": False})
    pod = render_benchmark(plan)[2]["spec"]["template"]
    assert "networking.gke.io/interfaces" not in pod["metadata"]["annotations"]
    assert "initContainers" not in pod["spec"]
    assert pod["spec"]["containers"][0]["command"] == [
        "python3", "/workload/launcher/launch.py", "--config", "/workload/config/config.json"
    ]


def test_kueue_queue_adds_label_and_suspends(tmp_path):
    settings = load_settings(path=tmp_path / "x.yaml", environ={}, gcs_bucket="b-1",
                             artifact_registry="us-docker.pkg.dev/my-project/r", kueue_name="a3ultra")
    job = render_benchmark(plan_benchmark(settings, "meta-llama/Llama-3.1-8B"))[2]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "a3ultra"
    assert job["spec"]["suspend"] is True


def test_launcher_config_carries_the_sweep_and_is_what_the_launcher_reads(settings):
    plan = plan_benchmark(settings, "meta-llama/Llama-3.1-405B", "nvidia-sweep", user="alice")
    config = json.loads(render_benchmark(plan)[1]["data"]["config.json"])
    assert config["tp_size"] == 8 and config["quantization"] == "FP8" and config["backend"] == "tensorrt"
    assert len(config["experiments"]) == 9 and config["run_id"] == plan.run_id
    assert config["results"] == "/gcs/trtllm-benchmarks"
    assert "tp-size" not in json.dumps(config)


def test_no_user_value_reaches_a_shell(settings):
    plan = plan_benchmark(settings, "meta-llama/Llama-3.1-405B", "128/128/30000", user="alice")
    job = render_benchmark(plan)[2]
    container = job["spec"]["template"]["spec"]["containers"][0]
    shell = " ".join(container["command"] + container.get("args", []))
    for value in (plan.release, plan.model.id, "30000", "my-results", plan.run_id):
        assert value not in shell


def test_run_id_is_stable_for_the_same_inputs_and_changes_with_them(settings):
    a = plan_benchmark(settings, "meta-llama/Llama-3.1-405B", "128/128/30000", user="alice")
    b = plan_benchmark(settings, "meta-llama/Llama-3.1-405B", "128/128/30000", user="alice")
    c = plan_benchmark(settings, "meta-llama/Llama-3.1-405B", "128/128/3000", user="alice")
    assert a.run_id == b.run_id != c.run_id
    assert plan_benchmark(settings, "meta-llama/Llama-3.1-8B", run_id="again-1").run_id == "again-1"
    with pytest.raises(ConfigError, match="run_id"):
        plan_benchmark(settings, "meta-llama/Llama-3.1-8B", run_id="Again 1")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"gpus": 9}, "gpus"),
        ({"gpus": -1}, "gpus"),
        ({"gpus": 4}, "gpus"),  # fewer than tp x pp = 8
        ({"overrides": {"replicas": 2}}, "overrides.replicas"),
        ({"overrides": {"backoff_limit": "3"}}, "overrides.backoff_limit"),
        ({"overrides": {"rdma": 1}}, "overrides.rdma"),
        ({"release": "Bad_Name"}, "release"),
        ({"model": 405}, "model"),
    ],
)
def test_bad_deploy_values_name_the_field(settings, kwargs, field):
    kwargs.setdefault("model", "meta-llama/Llama-3.1-405B")
    with pytest.raises(ConfigError) as e:
        plan_benchmark(settings, **kwargs)
    assert e.value.field == field


def test_a_real_deploy_needs_bucket_and_registry_but_a_dry_run_does_not(tmp_path):
    empty = load_settings(path=tmp_path / "x.yaml", environ={})
    with pytest.raises(ConfigError) as e:
        plan_benchmark(empty, "meta-llama/Llama-3.1-8B")
    assert e.value.field == "GCS_BUCKET, ARTIFACT_REGISTRY"
    plan = plan_benchmark(empty, "meta-llama/Llama-3.1-8B", dry_run=True)
    assert plan.image.startswith("LOCATION-docker.pkg.dev/PROJECT/REPO/")


def test_dry_run_writes_valid_yaml_files(settings, tmp_path):
    plan = plan_benchmark(settings, "meta-llama/Llama-3.1-405B", user="alice")
    result = deploy(plan, dry_run=True, out_dir=tmp_path / "out")
    assert [p.name for p in result.files] == [
        "01-configmap-alice-llama-3-1-405b-launcher.yaml",
        "02-configmap-alice-llama-3-1-405b-config.yaml",
        "03-job-alice-llama-3-1-405b.yaml",
    ]
    assert result.applied == []


def test_deploy_without_cluster_and_not_dry_run_is_refused(settings):
    with pytest.raises(ConfigError, match=r"setup\.ipynb"):
        deploy(plan_benchmark(settings, "meta-llama/Llama-3.1-8B"))


def test_rendered_objects_are_valid_for_several_versions(settings):
    objects = render_benchmark(plan_benchmark(settings, "meta-llama/Llama-3.1-405B", "nvidia-sweep"))
    for version in ("1.28", "1.31", "1.33"):
        validate_objects(objects, version)


def test_strict_validation_catches_a_misspelled_field(settings):
    objects = render_benchmark(plan_benchmark(settings, "meta-llama/Llama-3.1-8B"))
    pod = objects[2]["spec"]["template"]["spec"]
    pod["toleration"] = pod.pop("tolerations")
    with pytest.raises(ManifestError) as e:
        validate_objects(objects)
    assert "Job/" in str(e.value) and "toleration" in str(e.value)


def test_wrong_type_is_caught_with_its_path(settings):
    objects = render_benchmark(plan_benchmark(settings, "meta-llama/Llama-3.1-8B"))
    objects[2]["spec"]["backoffLimit"] = "one"
    with pytest.raises(ManifestError, match="backoffLimit"):
        validate_objects(objects)


def test_unknown_kubernetes_version_is_a_config_error():
    assert check_version("v1.31.7-gke.1265000") == "1.31"
    with pytest.raises(ConfigError, match=r"no schemas for Kubernetes 1\.9"):
        check_version("1.9")
    with pytest.raises(ConfigError, match="kubernetes_version"):
        check_version("latest")
