"""``metrics.k8s.io/v1beta1`` from the pods' real processes: ``kubectl top pods|nodes``, the
official client, and the HPA reading the same measurement as ``top``."""

from __future__ import annotations

import sys
import time

import pytest
import yaml
from cluster_testing import Kubectl, wait_for
from kubernetes import client, config

from aml_emulator.cluster import ClusterService
from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE
from aml_emulator.cluster.metrics import parse_quantity

# Burns one CPU for a bounded time (the machine is shared), then idles.
BURN = "import time\nend = time.time() + 20\nwhile time.time() < end:\n    pass\ntime.sleep(600)\n"
IDLE = "import time\ntime.sleep(600)\n"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _deployment(name: str, script: str, cpu_request: str | None = "100m") -> dict:
    container = {"name": name, "image": HOST_PROCESS_IMAGE, "command": [sys.executable, "-c", script]}
    if cpu_request:
        container["resources"] = {"requests": {"cpu": cpu_request}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [container], "terminationGracePeriodSeconds": 1}}}}


def _top_pods(kubectl: Kubectl) -> dict[str, tuple[int, int]]:
    """``kubectl top pods`` as {pod: (millicores, MiB)}."""
    rows = kubectl.run("top", "pods", "--no-headers").stdout.splitlines()
    return {r.split()[0]: (int(r.split()[1].rstrip("m")), int(r.split()[2].rstrip("Mi"))) for r in rows}


def test_kubectl_top_pods_and_nodes_measure_the_processes(tmp_path):
    clock = FakeClock()
    with ClusterService(clock=clock, backoff_base=0.3) as c:
        kubectl = Kubectl(c.kubeconfig_path, tmp_path / "cache")
        kubectl.run("apply", "-f", "-", input=yaml.safe_dump_all([_deployment("burn", BURN), _deployment("idle", IDLE)]))
        kubectl.run("rollout", "status", "deployment/burn", "--timeout=60s")
        kubectl.run("rollout", "status", "deployment/idle", "--timeout=60s")
        # The first sample of a process is its average since start, interpreter start-up included
        # (an idle pod measured 22m on a loaded machine). Past the resolution, the next sample is
        # the change over the real time between the two, which is what is compared here.
        wait_for(lambda: len(_top_pods(kubectl)) == 2, what="metrics of both pods")
        time.sleep(1.0)  # real CPU time has to pass for a rate to mean anything
        clock.t += 16
        top = _top_pods(kubectl)
        burn = next(v for k, v in top.items() if k.startswith("burn-"))
        idle = next(v for k, v in top.items() if k.startswith("idle-"))
        # a busy loop against a sleeping interpreter (the machine is shared: a loop may get little of a core)
        assert burn[0] >= 50 and idle[0] <= 20, top
        assert 1 <= idle[1] <= 200, top  # a Python interpreter's resident memory, in MiB
        _check_top_nodes_and_errors(kubectl)


def _check_top_nodes_and_errors(kubectl: Kubectl) -> None:
    nodes = kubectl.run("top", "nodes").stdout.splitlines()
    assert nodes[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    name, cpu, cpu_pct, memory, memory_pct = nodes[1].split()
    assert name == "emulator-node" and cpu.endswith("m") and memory.endswith("Mi")
    assert 0 < int(cpu_pct.rstrip("%")) <= 100 and 0 < int(memory_pct.rstrip("%")) <= 100

    r = kubectl.run("top", "pod", "nosuch", check=False)
    assert r.returncode == 1
    assert 'Error from server (NotFound): podmetrics.metrics.k8s.io "default/nosuch" not found' in r.stderr
    resources = kubectl.run("api-resources", "--api-group=metrics.k8s.io").stdout
    assert "NodeMetrics" in resources and "PodMetrics" in resources


def test_the_official_client_reads_pod_metrics(kubectl, k8s):
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(_deployment("idle", IDLE)))
    kubectl.run("rollout", "status", "deployment/idle", "--timeout=60s")
    custom = client.CustomObjectsApi(k8s)
    pods = wait_for(lambda: custom.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods",
                                                                 label_selector="app=idle")["items"], what="pod metrics")
    usage = pods[0]["containers"][0]["usage"]
    assert pods[0]["containers"][0]["name"] == "idle"
    assert parse_quantity(usage["memory"]) > 1 << 20 and parse_quantity(usage["cpu"]) >= 0
    node = custom.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", "emulator-node")
    assert node["kind"] == "NodeMetrics" and parse_quantity(node["usage"]["memory"]) > 0
    # the node reports its capacity, which kubectl top divides by
    capacity = client.CoreV1Api(k8s).read_node("emulator-node").status.allocatable
    assert int(capacity["cpu"]) >= 1 and parse_quantity(capacity["memory"]) > 0


def test_the_hpa_and_top_agree(tmp_path):
    clock = FakeClock()
    with ClusterService(clock=clock, hpa_sync_period=0.0, metrics_resolution=10.0, backoff_base=0.3) as c:
        kubectl = Kubectl(c.kubeconfig_path, tmp_path / "cache")
        kubectl.run("apply", "-f", "-", input=yaml.safe_dump(_deployment("burn", BURN)))
        kubectl.run("rollout", "status", "deployment/burn", "--timeout=60s")
        k8s = config.new_client_from_config(config_file=str(c.kubeconfig_path))
        try:
            auto = client.AutoscalingV2Api(k8s)
            auto.create_namespaced_horizontal_pod_autoscaler("default", {
                "metadata": {"name": "burn"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "burn"},
                         "minReplicas": 1, "maxReplicas": 1,
                         "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                             "type": "Utilization", "averageUtilization": 50}}}]}})
            # the clock stands still: the one sample the HPA computes from is the one top shows
            status = wait_for(lambda: (auto.read_namespaced_horizontal_pod_autoscaler_status("burn", "default").status
                                       or client.V2HorizontalPodAutoscalerStatus(desired_replicas=0)).current_metrics,
                              what="the HPA's current metrics")
            hpa_percent = status[0].resource.current.average_utilization
            (millicores, _), = _top_pods(kubectl).values()
            assert abs(millicores / 100 * 100 - hpa_percent) <= 1, (millicores, hpa_percent)  # top rounds to millicores
            assert hpa_percent >= 50  # the busy loop's real CPU, not a made-up figure
        finally:
            k8s.close()


def test_an_hpa_without_cpu_requests_cannot_compute(kubectl, k8s):
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(_deployment("norequest", IDLE, cpu_request=None)))
    kubectl.run("rollout", "status", "deployment/norequest", "--timeout=60s")
    kubectl.run("autoscale", "deployment", "norequest", "--max=2", "--cpu-percent=50")
    auto = client.AutoscalingV2Api(k8s)

    def active_condition():
        status = auto.read_namespaced_horizontal_pod_autoscaler_status("norequest", "default").status
        conds = (status.conditions if status else None) or []
        return next((x for x in conds if x.type == "ScalingActive"), None)
    cond = wait_for(active_condition, what="the HPA's ScalingActive condition")
    assert cond.status == "False" and cond.reason == "FailedGetResourceMetric"


@pytest.mark.parametrize("text,value", [("100m", 0.1), ("2", 2.0), ("128Mi", 128 * 2 ** 20), ("1e3", 1000.0),
                                        ("250000n", 0.00025), ("1.5Gi", 1.5 * 2 ** 30), ("x", None)])
def test_parse_quantity(text, value):
    got = parse_quantity(text)
    assert got == pytest.approx(value) if value is not None else got is None


def test_the_metrics_api_is_registered_as_an_apiservice(kubectl, k8s):
    table = kubectl.run("get", "apiservices").stdout.splitlines()
    assert table[0].split() == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    rows = {r.split()[0]: r.split()[1:3] for r in table[1:]}
    assert rows["v1beta1.metrics.k8s.io"] == ["Local", "True"]
    assert {"v1", "v1.apps", "v2.autoscaling"} <= set(rows)
    svc = kubectl.json("get", "apiservice", "v1beta1.metrics.k8s.io")
    assert svc["spec"]["group"] == "metrics.k8s.io" and svc["status"]["conditions"][0]["status"] == "True"
    r = kubectl.run("delete", "apiservice", "v1beta1.metrics.k8s.io", check=False)
    assert r.returncode == 1 and "MethodNotAllowed" in r.stderr and "read-only" in r.stderr
    got = client.ApiregistrationV1Api(k8s).read_api_service("v1beta1.metrics.k8s.io")
    assert got.spec.version == "v1beta1"


def test_a_sample_is_kept_for_the_resolution_of_the_cluster_clock(tmp_path):
    import subprocess
    from pathlib import Path

    from aml_emulator.cluster.kubelet import RunningContainer
    from aml_emulator.cluster.metrics import ResourceMeter

    clock = FakeClock()
    proc = subprocess.Popen([sys.executable, "-c", BURN], start_new_session=True)
    try:
        target = RunningContainer(pid=proc.pid, uid="u", env={}, ports={}, root=Path(tmp_path))
        meter = ResourceMeter(store=None, containers=lambda ns, pod, c: target, clock=clock, resolution=15.0)
        first = meter.container_usage("default", "p", "c")
        assert first is not None and first.memory > 1 << 20
        clock.t += 14
        assert meter.container_usage("default", "p", "c") is first
        clock.t += 2
        second = meter.container_usage("default", "p", "c")
        assert second is not first and second.cpu >= 0
    finally:
        proc.kill()
        proc.wait()
    clock.t += 16
    assert meter.container_usage("default", "p", "c") is None  # the process group is gone


def test_a_web_service_deployment_scales_on_the_front_door_not_cpu(tmp_path):
    clock = FakeClock()
    with ClusterService(clock=clock, hpa_sync_period=0.0, backoff_base=0.3) as c:
        kubectl = Kubectl(c.kubeconfig_path, tmp_path / "cache")
        web = _deployment("svc", BURN)
        web["metadata"]["labels"] = {"aml.service": "svc"}  # as the AKS provider labels it
        kubectl.run("apply", "-f", "-", input=yaml.safe_dump_all([web, _deployment("plain", BURN)]))
        kubectl.run("rollout", "status", "deployment/svc", "--timeout=60s")
        kubectl.run("rollout", "status", "deployment/plain", "--timeout=60s")
        wait_for(lambda: c.metrics.deployment_utilization("default", "svc") is not None, what="the pods measured")
        # the front door does not route "svc" yet: no figure (not its CPU); "plain" is on CPU
        assert c.controllers.metrics_source("default", "svc") is None
        assert c.controllers.metrics_source("default", "plain") == c.metrics.deployment_utilization("default", "plain")
