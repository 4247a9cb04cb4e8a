"""Server-side apply, list and uninstall against a real kube-apiserver on loopback."""

import pytest
from helpers import TESTS, project_settings

from recipelib.cluster.releases import apply, list_releases, uninstall
from recipelib.deploy import deploy, plan_benchmark
from recipelib.errors import ClusterError, ConflictError


@pytest.fixture(autouse=True)
def fixed_launcher(monkeypatch):
    monkeypatch.setenv("RECIPELIB_LAUNCHER", str(TESTS / "fixtures" / "launcher"))


@pytest.fixture
def settings(tmp_path, namespace):
    return project_settings(tmp_path, namespace)


def objects_of(cluster):
    """Every ConfigMap and Job in the test's namespace: ConfigMaps with their resourceVersion, Jobs with
    their generation, labels, annotations and spec (the 1.20 server rewrites a Job's managedFields time
    on a no-op apply, which moves its resourceVersion but nothing a user sees)."""
    found = {}
    for cm in cluster.core.list_namespaced_config_map(cluster.namespace).items:
        if cm.metadata.name != "kube-root-ca.crt":
            found[f"ConfigMap/{cm.metadata.name}"] = cm.metadata.resource_version
    for job in cluster.batch.list_namespaced_job(cluster.namespace).items:
        m = job.metadata
        found[f"Job/{m.name}"] = (m.generation, m.labels, m.annotations, job.spec.to_dict())
    return found


def test_apply_creates_then_a_second_apply_changes_nothing(cluster, settings):
    plan = plan_benchmark(settings, "meta-llama/Llama-3.1-405B", "128/128/30000", user="alice")
    first = deploy(plan, cluster)
    assert [a.action for a in first.applied] == ["created"] * 3
    before = objects_of(cluster)
    assert set(before) == {
        "ConfigMap/alice-llama-3-1-405b-launcher", "ConfigMap/alice-llama-3-1-405b-config", "Job/alice-llama-3-1-405b",
    }
    second = deploy(plan_benchmark(settings, "meta-llama/Llama-3.1-405B", "128/128/30000", user="alice"), cluster)
    assert [a.action for a in second.applied] == ["unchanged"] * 3
    assert objects_of(cluster) == before  # not one resourceVersion moved


def test_the_job_the_server_stores_is_what_we_rendered(cluster, settings):
    plan = plan_benchmark(settings, "meta-llama/Llama-3.1-405B", user="alice")
    deploy(plan, cluster)
    job = cluster.batch.read_namespaced_job(plan.release, cluster.namespace)
    assert job.spec.backoff_limit == 1 and job.spec.template.spec.restart_policy == "Never"
    assert job.spec.template.spec.containers[0].resources.limits == {"nvidia.com/gpu": "8"}
    managers = {f.manager for f in job.metadata.managed_fields}
    assert "recipelib" in managers


def test_a_field_owned_by_another_manager_is_reported_as_a_conflict(cluster, settings):
    plan = plan_benchmark(settings, "meta-llama/Llama-3.1-8B", user="alice")
    deploy(plan, cluster)
    name = f"{plan.release}-config"
    cluster.core.patch_namespaced_config_map(
        name, cluster.namespace, {"data": {"config.json": "{}"}}, field_manager="someone-else"
    )
    with pytest.raises(ConflictError) as e:
        deploy(plan, cluster)
    assert e.value.status == 409
    assert "force=True" in str(e.value) and "someone-else" in str(e.value)
    # force takes the field back, and the stored config is ours again
    deploy(plan, cluster, force=True)
    data = cluster.core.read_namespaced_config_map(name, cluster.namespace).data
    assert '"run_id"' in data["config.json"]


def test_a_different_run_under_the_same_release_is_explained(cluster, settings):
    first = plan_benchmark(settings, "meta-llama/Llama-3.1-8B", "128/128/100", user="alice")
    deploy(first, cluster)
    second = plan_benchmark(settings, "meta-llama/Llama-3.1-8B", "128/128/200", user="alice")
    with pytest.raises(ClusterError) as e:
        deploy(second, cluster)
    message = str(e.value)
    assert f"already holds run {first.run_id}" in message and f"this deploy is run {second.run_id}" in message
    assert "Uninstall the release first" in message and "another release name" in message
    assert "Nothing was changed" in message and "\n" not in message


def test_server_dry_run_stores_nothing(cluster, settings):
    plan = plan_benchmark(settings, "meta-llama/Llama-3.1-8B", user="alice")
    result = deploy(plan, cluster, dry_run=True)
    assert [(a.action, a.dry_run) for a in result.applied] == [("created", True)] * 3
    assert str(result.applied[-1]) == f"Job/{plan.release} would be created (dry run)"
    assert objects_of(cluster) == {}
    # a dry run of a deployed release says what would change, and changes nothing either
    deploy(plan, cluster)
    before = objects_of(cluster)
    again = deploy(plan, cluster, dry_run=True)
    assert [(a.action, a.dry_run) for a in again.applied] == [("unchanged", True)] * 3
    assert objects_of(cluster) == before


def test_list_and_uninstall_remove_exactly_the_releases_objects(cluster, settings):
    a = plan_benchmark(settings, "meta-llama/Llama-3.1-8B", user="alice")
    b = plan_benchmark(settings, "meta-llama/Llama-3.1-70B", user="bob")
    deploy(a, cluster)
    deploy(b, cluster)
    # an object of the user's own, not ours, even with a similar name
    cluster.core.create_namespaced_config_map(
        cluster.namespace, {"metadata": {"name": f"{a.release}-notes"}, "data": {"k": "v"}}
    )
    releases = {r.name: r for r in list_releases(cluster)}
    assert set(releases) == {a.release, b.release}
    assert releases[a.release].run_id == a.run_id and releases[a.release].model == "meta-llama/Llama-3.1-8B"
    assert releases[a.release].status == "Active"  # the Job controller made its pod
    assert len(releases[a.release].objects) == 3

    assert uninstall(cluster, a.release, dry_run=True) and len(objects_of(cluster)) == 7  # dry run deletes nothing
    deleted = uninstall(cluster, a.release)
    assert sorted(deleted) == sorted([f"ConfigMap/{a.release}-launcher", f"ConfigMap/{a.release}-config",
                                      f"Job/{a.release}"])
    left = objects_of(cluster)
    assert set(left) == {f"ConfigMap/{a.release}-notes", f"ConfigMap/{b.release}-launcher",
                         f"ConfigMap/{b.release}-config", f"Job/{b.release}"}
    assert uninstall(cluster, a.release) == []  # safe to repeat
    assert [r.name for r in list_releases(cluster)] == [b.release]


def test_apply_reports_an_unreachable_server_clearly(tmp_path):
    import kubernetes

    from recipelib.cluster import Cluster
    from recipelib.sandbox.gcs import free_port

    config = kubernetes.client.Configuration()
    config.host = f"https://127.0.0.1:{free_port()}"
    config.verify_ssl = False
    config.retries = 0
    broken = Cluster(kubernetes.client.ApiClient(config), "default", "nowhere")
    with pytest.raises(ClusterError) as e:
        apply(broken, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}])
    assert str(e.value).startswith(
        f"cannot reach the Kubernetes API at {config.host}: connection refused; if this is the local sandbox, "
        "start it with `python -m recipelib.sandbox start`")
