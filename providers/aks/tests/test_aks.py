"""AKS-specific rules: deployment configuration validation, the FastProd rule, provisioning
through ARM (the emulator's managedClusters), attaching once only, kubeconfig attach."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from aml_core.compute import ComputeTarget
from aml_core.errors import Conflict, InvalidConfig
from aml_provider_aks import AksCompute, AksWebservice


@pytest.mark.parametrize("kwargs, message", [
    ({"cpu_cores": 0}, "cpu_cores must be greater than zero"),
    ({"cpu_cores": 2, "cpu_cores_limit": 1}, "cpu_cores must be less than or equal to cpu_cores_limit"),
    ({"autoscale_enabled": True, "num_replicas": 2}, "autoscale enabled and num_replicas provided"),
    ({"autoscale_enabled": False}, "autoscale disabled but num_replicas not provided"),
    ({"num_replicas": 2, "autoscale_max_replicas": 4}, "autoscale disabled but autoscale_max_replicas provided"),
    ({"autoscale_min_replicas": 5, "autoscale_max_replicas": 2}, "cannot be greater than"),
    ({"auth_enabled": True, "token_auth_enabled": True}, "cannot set both token_auth_enabled and auth_enabled"),
    ({"namespace": "-bad-"}, "Invalid namespace"),
])
def test_deploy_configuration_rules(kwargs, message):
    with pytest.raises(InvalidConfig, match=message) as info:
        AksWebservice.deploy_configuration(**kwargs)
    assert info.value.code == "InvalidConfig"


def test_effective_defaults_follow_the_reference():
    config = AksWebservice.deploy_configuration()
    assert config.effective_autoscale_enabled and config.effective_min_replicas == 1
    assert config.effective_max_replicas == 10 and config.effective_target_utilization == 70
    assert config.effective_auth_enabled and config.effective_scoring_timeout_ms == 60000
    assert config.effective_initial_delay_seconds == 310 and config.effective_timeout_seconds == 2
    assert not AksWebservice.deploy_configuration(num_replicas=2).effective_autoscale_enabled
    again = type(config).from_dict(config.to_dict())
    assert again == config
    assert config.evolve_settings(num_replicas=3).effective_autoscale_enabled is False


def test_fast_prod_needs_twelve_vcpus_and_dev_test_is_exempt():
    assert AksCompute.provisioning_configuration().agent_count == 3
    with pytest.raises(InvalidConfig, match="FastProd rule") as info:
        AksCompute.provisioning_configuration(agent_count=2, vm_size="Standard_D3_v2")
    assert "12" in str(info.value)
    AksCompute.provisioning_configuration(agent_count=1, vm_size="Standard_D4_v2", cluster_purpose="DevTest")
    AksCompute.provisioning_configuration(agent_count=3, vm_size="Standard_D3_v2")


def test_attach_configuration_needs_a_cluster():
    with pytest.raises(InvalidConfig, match="resource_group and cluster_name"):
        AksCompute.attach_configuration(resource_group="rg")


def test_provision_through_arm_then_attach_twice_is_a_conflict(emulator, ws, tmp_path):
    target = ComputeTarget.create(ws, "aks1", AksCompute.provisioning_configuration())
    target.wait_for_completion(show_output=False, timeout_sec=60)
    assert target.provisioning_state == "Succeeded"
    kubeconfig = ComputeTarget(ws, "aks1").record.details["kubeconfig"]
    out = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "--cache-dir", str(tmp_path / "kc"),
                          "get", "namespaces", "-o", "name"], capture_output=True, text=True, timeout=60)
    assert "namespace/default" in out.stdout, out.stderr

    attached = ComputeTarget.attach(ws, "again", AksCompute.attach_configuration(
        resource_group=emulator.resource_group, cluster_name="aks1"))
    with pytest.raises(Conflict, match="already attached"):
        attached.wait_for_completion()
    by_file = ComputeTarget.attach(ws, "byfile", AksCompute.attach_configuration(kubeconfig_path=str(emulator.cluster.kubeconfig_path)))
    by_file.wait_for_completion()
    assert by_file.provisioning_state == "Succeeded"
    ComputeTarget(ws, "byfile").detach()
    ComputeTarget(ws, "aks1").delete()
    assert ComputeTarget.list(ws) == []


def _container_status(restarts: int, ready: bool, finished_seconds_ago: float | None):
    from kubernetes.client import V1ContainerState, V1ContainerStateTerminated, V1ContainerStatus

    last = None
    if finished_seconds_ago is not None:
        finished = datetime.now(timezone.utc) - timedelta(seconds=finished_seconds_ago)
        last = V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=1, finished_at=finished))
    return V1ContainerStatus(name="score", image="i", image_id="", ready=ready, restart_count=restarts,
                             last_state=last, state=V1ContainerState())


@pytest.mark.parametrize("restarts, ready, finished_ago, crashing", [
    (2, False, 5, True),       # failed twice, the last time just now, not ready between back-offs
    (1, False, 5, False),      # one restart (a killed replica) is not a crash loop
    (5, False, 3600, False),   # crashes long ago, now merely not ready (e.g. busy)
    (5, True, 5, False),       # ready: serving
    (3, False, None, False),   # no termination recorded
])
def test_a_crash_loop_is_repeated_recent_failures_not_one_restart(restarts, ready, finished_ago, crashing):
    from aml_provider_aks.deploy import _crashing

    assert _crashing(_container_status(restarts, ready, finished_ago)) is crashing


@pytest.mark.parametrize("refresh, period", [(None, 1), (20, 20), (5000, 1800)])
def test_autoscale_refresh_seconds_is_the_period_of_the_hpa_policies(refresh, period):
    from aml_provider_aks.deploy import _hpa

    config = AksWebservice.deploy_configuration(autoscale_refresh_seconds=refresh, autoscale_max_replicas=6)
    behavior = _hpa("svc", "svc", config)["spec"]["behavior"]
    up, down = behavior["scaleUp"]["policies"], behavior["scaleDown"]["policies"]
    assert {(pol["type"], pol["value"]) for pol in up} == {("Percent", 100), ("Pods", 4)}
    assert {pol["periodSeconds"] for pol in up + down} == {period}
