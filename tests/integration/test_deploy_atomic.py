"""A refused deploy changes nothing on the cluster: every object of the namespace, compared before and after.

Two ways a deploy used to leave a release half-changed (issue 13): another run deployed under an existing
release rewrote the release's ConfigMaps before the server refused the Job (a Job's pod template is
immutable), so a retry of the old run's pod would have run the new sweep; and a value the server refuses
left the ConfigMaps without their Job. Both are now refused before the first write. Against the real
kube-apiserver on loopback (tests/conftest.py), a fresh namespace per test.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import TESTS, deploy_on_sandbox, project_settings, until

from recipelib.deploy import deploy, plan_benchmark
from recipelib.errors import ClusterError
from recipelib.monitor import wait
from recipelib.views.notebook import show_deploy

MODEL = "meta-llama/Llama-3.1-8B"


@pytest.fixture(autouse=True)
def fixed_launcher(monkeypatch):
    monkeypatch.setenv("RECIPELIB_LAUNCHER", str(TESTS / "fixtures" / "launcher"))


@pytest.fixture
def settings(tmp_path, namespace):
    return project_settings(tmp_path, namespace)


def everything(cluster) -> dict[str, Any]:
    """Every object a deploy could touch in the namespace: its resourceVersion and what it holds."""
    found: dict[str, Any] = {}
    lists = {
        "ConfigMap": cluster.core.list_namespaced_config_map, "Pod": cluster.core.list_namespaced_pod,
        "Service": cluster.core.list_namespaced_service, "Job": cluster.batch.list_namespaced_job,
    }
    for kind, list_objects in lists.items():
        for obj in list_objects(cluster.namespace).items:
            body = cluster.api.sanitize_for_serialization(obj)
            meta = body["metadata"]
            found[f"{kind}/{meta['name']}"] = (meta["resourceVersion"], meta.get("uid"),
                                               {k: v for k, v in body.items() if k != "metadata"},
                                               meta.get("labels"), meta.get("annotations"))
    found.pop("ConfigMap/kube-root-ca.crt", None)
    return found


def settled(cluster, release: str) -> dict[str, Any]:
    """The namespace once the Job controller has made the pod and recorded it (no more writes of its own)."""
    until("the Job's pod", lambda: (j := cluster.batch.read_namespaced_job(release, cluster.namespace)).status.active
          and j.status.start_time, timeout=60)
    return everything(cluster)


@pytest.mark.parametrize(
    ("second", "why"),
    [
        ({"experiments": "128/128/200"}, "another sweep (its derived run id differs)"),
        ({"run_id": "second-try"}, "the same sweep under a run id of the user's"),
    ],
)
def test_another_run_under_an_existing_release_changes_nothing(cluster, settings, second, why):
    first = plan_benchmark(settings, MODEL, "128/128/100", user="alice")
    deploy(first, cluster)
    before = settled(cluster, first.release)
    other = plan_benchmark(settings, MODEL, **{"experiments": "128/128/100", **second}, user="alice")
    assert other.release == first.release and other.run_id != first.run_id, why
    with pytest.raises(ClusterError) as e:
        deploy(other, cluster)
    message = str(e.value)
    assert f"release {first.release} already holds run {first.run_id}" in message
    assert f"this deploy is run {other.run_id}" in message
    assert "Uninstall the release first" in message and "another release name" in message
    assert everything(cluster) == before  # not one resourceVersion moved: the launcher ConfigMaps are the old run's


def test_the_same_run_with_other_settings_is_refused_while_it_is_deployed(cluster, settings):
    first = plan_benchmark(settings, MODEL, "128/128/100", user="alice", run_id="mine")
    deploy(first, cluster)
    before = settled(cluster, first.release)
    changed = plan_benchmark(settings, MODEL, "128/128/300", user="alice", run_id="mine")
    with pytest.raises(ClusterError) as e:
        deploy(changed, cluster)
    assert f"(ConfigMap/{first.release}-config, Job/{first.release} would change)" in str(e.value), str(e.value)
    assert "new run id" in str(e.value)
    assert everything(cluster) == before


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"accelerator": "nvidia h200"}, "nodeSelector"),  # a label value has no spaces
        ({"hf_secret_key": "hf api token"}, "secretKeyRef.key"),  # nor has a Secret's key
    ],
)
def test_a_value_the_server_refuses_leaves_nothing_behind(cluster, settings, overrides, field):
    kept = plan_benchmark(settings, "meta-llama/Llama-3.1-70B", user="bob")
    deploy(kept, cluster)  # another release in the namespace, which must stay as it is
    before = settled(cluster, kept.release)
    plan = plan_benchmark(settings, MODEL, user="alice", overrides=overrides)
    with pytest.raises(ClusterError) as e:
        deploy(plan, cluster)
    assert e.value.status == 422 and field in str(e.value)
    assert "Nothing was changed" in str(e.value) and "overrides" in str(e.value)
    assert everything(cluster) == before  # in particular no ConfigMap of alice's without its Job


def test_a_job_the_namespace_quota_refuses_leaves_no_configmaps(cluster, settings):
    """The Job is the last object sent: a refusal at admission (here a quota of no Jobs) used to come after the
    ConfigMaps were written."""
    cluster.core.create_namespaced_resource_quota(cluster.namespace, {
        "metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}})
    until("the quota's status", lambda: cluster.core.read_namespaced_resource_quota(
        "no-jobs", cluster.namespace).status.hard, timeout=60)
    before = everything(cluster)
    with pytest.raises(ClusterError) as e:
        deploy(plan_benchmark(settings, MODEL, user="alice"), cluster)
    assert e.value.status == 403 and "exceeded quota" in str(e.value) and "Nothing was changed" in str(e.value)
    assert "ResourceQuota" in str(e.value) and "container.developer" not in str(e.value)  # the hint fits the cause
    assert everything(cluster) == before == {}


def test_redeploying_a_finished_run_says_so_and_changes_nothing(sandbox, ns, capsys):
    plan = deploy_on_sandbox(sandbox, ns, "meta-llama/Llama-3.1-405B", user="fin", run_prefix="fin",
                             overrides={"backoff_limit": 0})
    state = wait(ns, plan.release, timeout_s=120, poll_s=0.5).status.state  # Complete, or Failed: both are final
    before = everything(ns)
    again = deploy(plan, ns)
    assert again.applied == []
    assert again.note and f"run {plan.run_id} of release {plan.release} already finished ({state})" in again.note
    assert "nothing was re-run" in again.note and f'run_id="{plan.run_id}-2"' in again.note
    assert f"cleanup.ipynb -p release {plan.release}" in again.note
    show_deploy(again)
    assert f"Note: run {plan.run_id} of release {plan.release} already finished" in capsys.readouterr().out
    assert everything(ns) == before
    # and the run id it suggests is refused here (the finished Job stays), saying to uninstall first
    with pytest.raises(ClusterError, match=f"already holds run {plan.run_id} .*{state}.*Uninstall the release"):
        deploy(plan_benchmark(sandbox.settings(namespace=ns.namespace), plan.model.id, user="fin",
                              run_id=f"{plan.run_id}-2", overrides={"backoff_limit": 0}), ns)
    assert everything(ns) == before


def test_a_write_refused_midway_removes_what_it_created(cluster, settings):
    """The last guard, for a refusal that comes only at the real write (a quota filled meanwhile, a webhook):
    the ConfigMaps this apply created are deleted again. Written without the dry-run check to get there."""
    from recipelib.cluster.releases import write_objects
    from recipelib.deploy.benchmark import cluster_features
    from recipelib.deploy.render import render_benchmark

    plan = plan_benchmark(settings, MODEL, user="alice", overrides={"accelerator": "nvidia h200"})
    objects = render_benchmark(plan, cluster_features(cluster))
    assert [o["kind"] for o in objects] == ["ConfigMap", "ConfigMap", "Job"]
    with pytest.raises(ClusterError) as e:
        write_objects(cluster, objects)
    assert e.value.status == 422
    assert everything(cluster) == {}
