"""Serving manifests: the dry run renders Deployment, Service (with probes) and load Job valid for Kubernetes
1.31 strict; the A3 Ultra pod is one shared template; trtllm-serve gets only the flags its version has; bad
input is refused naming the field before anything is rendered or sent."""

from __future__ import annotations

import pytest
import yaml

from launcher.testing.trtllm_serve import build_cli
from recipelib.deploy import plan_benchmark, render_benchmark
from recipelib.deploy.serving import plan_serving, render_serving, serve_command, serve_table
from recipelib.deploy.serving_load import check_mode, deploy_serving_mode, plan_load, render_load
from recipelib.deploy.validate import validate_objects
from recipelib.errors import ConfigError
from recipelib.serving.aiperf_env import AIPERF_VERSION
from recipelib.settings import load_settings

REGISTRY = "us-central1-docker.pkg.dev/my-project/my-repo"


def settings(tmp_path, **extra):
    return load_settings(path=tmp_path / "none.yaml", environ={}, gcs_bucket="my-results",
                         artifact_registry=REGISTRY, **extra)


def kinds(objects):
    return {o["kind"]: o for o in objects}


def container(pod_spec, name):
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def test_dry_run_renders_deployment_service_and_load_job_valid_for_1_31(tmp_path):
    results = deploy_serving_mode(settings(tmp_path), None, model="meta-llama/Llama-3.1-405B", user="alice",
                                  experiments="128/128/200", concurrency="1,2,4,8", ttft_ms=6000, tpot_ms=175,
                                  dry_run=True, out_dir=tmp_path / "out")
    objects = [o for r in results for o in r.objects]
    validate_objects(objects, "1.31")  # strict: deploy_objects validated them too, this says which version
    by = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "alice-llama-3-1-405b-serve"), ("Service", "alice-llama-3-1-405b-serve"),
            ("ConfigMap", "alice-llama-3-1-405b-serve")} <= by
    assert any(kind == "Job" and name.startswith("alice-llama-3-1-405b-load-") for kind, name in by)
    assert len(list((tmp_path / "out").iterdir())) == 5
    assert all(o["metadata"]["labels"]["app.kubernetes.io/instance"] == "alice-llama-3-1-405b" for o in objects)

    server = kinds(results[0].objects)
    dep, svc = server["Deployment"], server["Service"]
    pod = dep["spec"]["template"]["spec"]
    serve = container(pod, "serve")
    assert dep["spec"]["strategy"] == {"type": "Recreate"} and pod["restartPolicy"] == "Always"
    assert serve["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    startup = serve["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60  # a 405B load: tens of minutes
    assert serve["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    argv = serve["args"][serve["args"].index("trtllm-serve"):]
    assert argv[1] == "/ssd/models/meta-llama/Llama-3.1-405B"
    assert argv[argv.index("--host") + 1] == "0.0.0.0" and argv[argv.index("--port") + 1] == "8000"
    assert argv[argv.index("--tp_size") + 1] == "8"
    assert 'exec "$@"' in serve["args"][0]  # the argv is data after the gIB wrapper, never spliced into it
    fetch = next(c for c in pod["initContainers"] if c["name"] == "fetch-checkpoint")
    assert fetch["command"][-3:] == ["fetch", "--config", "/workload/serve/serve.json"]

    load = kinds(results[1].objects)
    job = load["Job"]
    lpod = job["spec"]["template"]["spec"]
    assert job["metadata"]["annotations"]["recipelib.io/aiperf-version"] == AIPERF_VERSION
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    assert "HF_TOKEN" not in str(lpod)  # the load pod reads the tokenizer from SSD, never the hub
    config = yaml.safe_load(load["ConfigMap"]["data"]["load.json"])
    sweep = config["sweeps"][0]
    assert sweep["url"] == "http://alice-llama-3-1-405b-serve:8000"
    assert sweep["tokenizer"] == argv[1] and config["aiperf_version"] == AIPERF_VERSION
    assert sweep["concurrency"] == [1, 2, 4, 8] and sweep["requests"] == 200
    assert sweep["slos"] == {"time_to_first_token": 6000.0, "inter_token_latency": 175.0}
    assert config["results"] == "/gcs/trtllm-benchmarks"


def test_the_a3_ultra_pod_is_one_template_for_the_job_and_the_deployment(tmp_path):
    s = settings(tmp_path)
    job = kinds(render_benchmark(plan_benchmark(s, "meta-llama/Llama-3.1-405B", user="alice")))["Job"]
    dep = kinds(render_serving(plan_serving(s, "meta-llama/Llama-3.1-405B", user="alice")))["Deployment"]
    jt, dt = job["spec"]["template"], dep["spec"]["template"]
    jp, dp = jt["spec"], dt["spec"]
    for key in ("nodeSelector", "tolerations"):
        assert jp[key] == dp[key]
    for key in ("networking.gke.io/default-interface", "networking.gke.io/interfaces"):
        assert jt["metadata"]["annotations"][key] == dt["metadata"]["annotations"][key]
    assert jp["initContainers"][0] == dp["initContainers"][0]  # the gIB NCCL plugin installer
    volumes = {v["name"]: v for v in dp["volumes"]}
    assert all(v == volumes[v["name"]] for v in jp["volumes"] if v["name"] in ("shared-memory", "local-ssd", "gib"))
    bench, serve = container(jp, "benchmark"), container(dp, "serve")
    assert bench["env"] == serve["env"]  # HF token from the secret, HF_HOME on SSD, NCCL settings
    assert bench["resources"] == serve["resources"]
    assert bench["args"][0].split("&& exec")[0] == serve["args"][0].split("&& exec")[0]  # gIB env, LD_LIBRARY_PATH
    assert "LD_LIBRARY_PATH" in serve["args"][0]


def test_kueue_queue_labels_the_deployment_and_its_pods(tmp_path):
    dep = kinds(render_serving(plan_serving(settings(tmp_path, kueue_name="a3ultra"), "meta-llama/Llama-3.1-8B",
                                            user="alice")))["Deployment"]
    assert dep["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "a3ultra"
    assert dep["spec"]["template"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "a3ultra"
    without = kinds(render_serving(plan_serving(settings(tmp_path), "meta-llama/Llama-3.1-8B", user="a")))
    assert "kueue.x-k8s.io/queue-name" not in without["Deployment"]["metadata"]["labels"]


@pytest.mark.parametrize("version", ["v0.17.0", "0.19.0", "0.21.0", "1.0.0", "1.2.0"])
def test_trtllm_serve_flags_are_those_the_version_table_lists(tmp_path, version):
    """Parsed by click from the version's table, as trtllm-serve's own click command would parse them."""
    plan = plan_serving(settings(tmp_path, trtllm_version=version), "meta-llama/Llama-3.1-8B", user="alice")
    argv = serve_command(plan)
    table = serve_table(version)
    listed = {o["name"] for o in table["command"]["options"]}
    assert {a for a in argv if a.startswith("--")} <= listed
    ctx = build_cli(table).make_context("trtllm-serve", argv[1:])  # exits 2 on an option the version lacks
    assert ctx is not None
    if version.startswith("1."):
        assert argv[argv.index("--backend") + 1] == "pytorch"  # the 1.x flow


def test_extra_llm_api_options_only_where_the_version_has_the_option(tmp_path):
    extra = {"serve_extra_llm_api_options": {"kv_cache_config": {"enable_block_reuse": False}}}
    with pytest.raises(ConfigError) as e:
        plan_serving(settings(tmp_path), "meta-llama/Llama-3.1-8B", user="a", overrides=extra)
    assert e.value.field == "overrides.serve_extra_llm_api_options" and "0.17" in str(e.value)
    plan = plan_serving(settings(tmp_path, trtllm_version="1.2.0"), "meta-llama/Llama-3.1-8B", user="a",
                        overrides=extra)
    objects = kinds(render_serving(plan))
    assert yaml.safe_load(objects["ConfigMap"]["data"]["extra_llm_api_options.yaml"]) == extra[
        "serve_extra_llm_api_options"]
    assert "/workload/serve/extra_llm_api_options.yaml" in serve_command(plan)


def test_a_model_whose_tp_does_not_fit_the_node_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ConfigError) as e:
        plan_serving(settings(tmp_path), "meta-llama/Llama-3.1-405B", tp_size=16)
    assert e.value.field == "tp_size" and "one node has 1-8" in str(e.value)
    with pytest.raises(ConfigError) as e:
        plan_serving(settings(tmp_path), "meta-llama/Llama-3.1-8B", tp_size=4, gpus=2)
    assert e.value.field == "gpus"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"concurrency": "0,1"}, "concurrency"),
        ({"concurrency": "1,x"}, "concurrency"),
        ({"request_rate": "-1"}, "request_rate"),
        ({"concurrency": "1", "ttft_ms": -5}, "slos.ttft_ms"),
        ({"concurrency": "1", "experiments": "128/128/10,128/128/20"}, "experiments"),
        ({"concurrency": "1", "release": "9lives"}, "release"),
    ],
)
def test_bad_load_input_is_refused_before_anything_is_rendered(tmp_path, params, field):
    out = tmp_path / "out"
    options = {"experiments": "128/128/10", **params}
    with pytest.raises(ConfigError) as e:
        deploy_serving_mode(settings(tmp_path), None, model="meta-llama/Llama-3.1-8B", user="a", dry_run=True,
                            out_dir=out, **options)
    assert e.value.field == field
    assert not out.exists()


def test_mode_is_checked_and_load_parameters_need_serving():
    assert check_mode("throughput") == "throughput" and check_mode("serving", concurrency="1") == "serving"
    with pytest.raises(ConfigError) as e:
        check_mode("serve")
    assert e.value.field == "mode"
    with pytest.raises(ConfigError) as e:
        check_mode("throughput", concurrency="1,2")
    assert e.value.field == "concurrency"


def test_load_job_goes_to_the_servers_node_and_names_fit(tmp_path):
    plan = plan_load(settings(tmp_path), "meta-llama/Llama-3.1-8B", release="r" * 57, experiments="64/32/10",
                     request_rate="0.5,2", dry_run=True)
    assert len(plan.job_name) <= 63 and plan.job_name.endswith(plan.run_id)
    node_plan = type(plan)(plan.release, plan.namespace, type(plan.server)(**{**plan.server.__dict__,
                                                                                "node": "node-1"}),
                           plan.sweeps, plan.image, plan.bucket, plan.results_prefix, plan.run_id, plan.values)
    job = kinds(render_load(node_plan))["Job"]
    assert job["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"] == "node-1"
    assert plan.run_id == node_plan.run_id  # the node does not change what the run measures
