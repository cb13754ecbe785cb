"""Controllers and kubelet end to end: pods run as local processes, become Ready behind a
service's load balancer, roll over without a failed request, restart after SIGKILL, back
off when crashing, autoscale, and never outlive the cluster."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import urllib.error
from contextlib import contextmanager
from pathlib import Path

import pytest
from aml_emulator.cluster import ClusterService
from cluster_testing import CRASHER, deployment, group_alive, http_get, service, wait_for
from kubernetes import client
from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE


def _pids(v1, selector: str) -> dict[str, int]:
    out = {}
    for p in v1.list_namespaced_pod("default", label_selector=selector).items:
        for cs in (p.status and p.status.container_statuses) or []:
            if cs.container_id and cs.state.running:
                out[p.metadata.name] = int(cs.container_id.rsplit("/", 1)[1])
    return out


def _ready(apps, name: str, replicas: int):
    def check():
        d = apps.read_namespaced_deployment(name, "default")
        s = d.status
        return (s and s.observed_generation == d.metadata.generation and s.ready_replicas == replicas
                and s.updated_replicas == replicas and (s.replicas or 0) == replicas)
    return check


def _service_url(v1, name: str) -> str:
    return wait_for(lambda: (v1.read_namespaced_service(name, "default").metadata.annotations or {}).get("emulator.aml/url"),
                    what="service load balancer url")


def test_deployment_serves_through_service_load_balancer(k8s, cluster):
    apps, v1 = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    apps.create_namespaced_deployment("default", deployment("web", "v1", replicas=2))
    v1.create_namespaced_service("default", service("web"))
    wait_for(_ready(apps, "web", 2), timeout=30, what="2 ready replicas")
    ep = v1.read_namespaced_endpoints("web", "default")
    ports = sorted(s.ports[0].port for s in ep.subsets)
    assert len(ports) == 2 and len(set(ports)) == 2  # distinct loopback ports per pod
    pods = v1.list_namespaced_pod("default", label_selector="app=web").items
    assert {p.status.pod_ip for p in pods} == {"127.0.0.1"}
    assert sorted(int(p.metadata.annotations["emulator.aml/port"]) for p in pods) == ports
    url = _service_url(v1, "web")
    bodies = [http_get(url)[1] for _ in range(6)]
    assert set(bodies) == {b"v1"}
    # round robin: both pods have served requests
    wait_for(lambda: all("served" in v1.read_namespaced_pod_log(p.metadata.name, "default") for p in pods),
             timeout=5, what="both pods served")


def test_rolling_update_has_no_failed_request(k8s, cluster):
    apps, v1 = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    apps.create_namespaced_deployment("default", deployment("roll", "v1", replicas=2))
    v1.create_namespaced_service("default", service("roll"))
    wait_for(_ready(apps, "roll", 2), timeout=30, what="v1 ready")
    url = _service_url(v1, "roll")
    results: list[bytes] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 25
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                code, body = http_get(url, timeout=5)
                results.append(body) if code == 200 else failures.append(f"status {code}")
            except (OSError, urllib.error.URLError) as e:
                failures.append(repr(e))
            time.sleep(0.01)
    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        apps.patch_namespaced_deployment("roll", "default", {"spec": {"template": {"spec": {"containers": [
            {"name": "web", "env": [{"name": "VERSION", "value": "v2"}]}]}}}})
        wait_for(_ready(apps, "roll", 2), timeout=30, what="v2 rolled out")
        wait_for(lambda: len(v1.list_namespaced_pod("default", label_selector="app=roll").items) == 2,
                 timeout=15, what="old pods gone")
        n = len(results)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert b"v1" in results and b"v2" in results
    assert set(results[n + 3:]) == {b"v2"}


def test_sigkilled_container_restarts_and_deleted_pod_is_replaced(k8s, cluster):
    apps, v1 = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    apps.create_namespaced_deployment("default", deployment("kill", replicas=2))
    v1.create_namespaced_service("default", service("kill"))
    wait_for(_ready(apps, "kill", 2), timeout=30, what="ready")
    url = _service_url(v1, "kill")
    pids = _pids(v1, "app=kill")
    victim, pid = sorted(pids.items())[0]
    os.kill(pid, signal.SIGKILL)
    # the other replica keeps serving at once: a connection the dying process refused or
    # dropped unanswered is replayed on the next ready endpoint
    for _ in range(10):
        assert http_get(url)[0] == 200

    def restarted():
        p = v1.read_namespaced_pod(victim, "default")
        cs = p.status.container_statuses[0]
        return cs.restart_count == 1 and cs.ready and cs.last_state.terminated and cs.last_state.terminated.exit_code == 137
    wait_for(restarted, timeout=20, what="restart after SIGKILL")
    assert _pids(v1, "app=kill")[victim] != pid

    v1.delete_namespaced_pod(victim, "default")
    wait_for(lambda: victim not in _pids(v1, "app=kill") and len(_pids(v1, "app=kill")) == 2, timeout=20,
             what="replacement pod")
    wait_for(_ready(apps, "kill", 2), timeout=20, what="ready again")


def test_crashing_container_backs_off_with_logs(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_pod("default", {"metadata": {"name": "crash"}, "spec": {"containers": [
        {"name": "app", "image": HOST_PROCESS_IMAGE, "command": [sys.executable, "-c", CRASHER]}]}})

    def backing_off():
        st = v1.read_namespaced_pod("crash", "default").status
        cs = ((st and st.container_statuses) or [None])[0]
        return cs if cs and cs.restart_count >= 2 and cs.state.waiting and cs.state.waiting.reason == "CrashLoopBackOff" else None
    cs = wait_for(backing_off, timeout=20, what="CrashLoopBackOff")
    assert cs.last_state.terminated.exit_code == 3 and cs.last_state.terminated.reason == "Error"
    assert "back-off" in cs.state.waiting.message
    logs = v1.read_namespaced_pod_log("crash", "default", container="app")
    assert "Traceback" in logs and "starting and then failing" in logs
    previous = v1.read_namespaced_pod_log("crash", "default", container="app", previous=True)
    assert "Traceback" in previous  # the instance before the last restart (kubectl logs -p)
    # the back-off doubles: base 0.3 s → 0.3, 0.6, 1.2 ...
    kubelet = cluster.kubelet
    assert [kubelet.backoff(n) for n in (1, 2, 3, 4)] == [0.3, 0.6, 1.2, 2.4]
    assert ClusterService().backoff_base == 10.0 and kubelet.backoff_cap == 300.0
    assert cluster.kubelet.backoff(100) == 300.0


def test_liveness_probe_failure_restarts_container(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    sleeper = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
    v1.create_namespaced_pod("default", {"metadata": {"name": "live"}, "spec": {"containers": [
        {"name": "app", "image": HOST_PROCESS_IMAGE, "command": [sys.executable, "-c", sleeper],
         "ports": [{"containerPort": 9000}],
         "livenessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 1, "failureThreshold": 2,
                           "initialDelaySeconds": 0}}]}})
    def restarted() -> bool:
        st = v1.read_namespaced_pod("live", "default").status
        return bool(st and st.container_statuses and st.container_statuses[0].restart_count >= 1)
    wait_for(restarted, timeout=20, what="liveness restart")
    events = v1.list_namespaced_event("default", field_selector="involvedObject.name=live").items
    assert any(e.reason == "Unhealthy" for e in events)


def test_env_from_secret_and_configmap(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_secret("default", {"metadata": {"name": "creds"}, "string_data": {"password": "s3cr3t"}})
    v1.create_namespaced_config_map("default", {"metadata": {"name": "settings"}, "data": {"mode": "fast"}})
    script = "import os\nprint('pw', os.environ['PW'], 'mode', os.environ['MODE'], 'ns', os.environ['NS'], flush=True)\nimport time; time.sleep(60)\n"
    v1.create_namespaced_pod("default", {"metadata": {"name": "env"}, "spec": {"containers": [
        {"name": "app", "image": HOST_PROCESS_IMAGE, "command": [sys.executable, "-c", script],
         "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                 {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                 {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]}]}})
    def logged() -> bool:
        st = v1.read_namespaced_pod("env", "default").status
        return bool(st and st.phase == "Running") and "pw s3cr3t mode fast ns default" in v1.read_namespaced_pod_log("env", "default")
    wait_for(logged, timeout=15, what="env resolved")
    # a missing key keeps the container waiting with the reason kubectl shows
    v1.create_namespaced_pod("default", {"metadata": {"name": "noenv"}, "spec": {"containers": [
        {"name": "app", "image": HOST_PROCESS_IMAGE, "command": [sys.executable, "-c", script],
         "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}}]}]}})
    def config_error() -> bool:
        st = v1.read_namespaced_pod("noenv", "default").status
        cs = st.container_statuses if st else None
        return bool(cs and cs[0].state.waiting and cs[0].state.waiting.reason == "CreateContainerConfigError")
    wait_for(config_error, timeout=10, what="CreateContainerConfigError")


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@contextmanager
def hpa_on_fake_clock(metrics: dict, max_replicas: int, behavior: dict | None = None, sync_period: float = 0.0):
    """A cluster on a fake clock whose HPA syncs at every tick (or every ``sync_period``
    seconds of the fake clock), fed ``metrics`` (deployment
    name -> utilization), with Deployment ``web`` (1 replica) and its HPA (target 50 %).
    Yields ``(clock, apps, autoscaling)``."""
    from kubernetes import config

    clock = FakeClock()
    c = ClusterService(clock=clock, hpa_sync_period=sync_period, backoff_base=0.3,
                       metrics_source=lambda ns, name: metrics.get(name)).start()
    try:
        k8s = config.new_client_from_config(config_file=str(c.kubeconfig_path))
        apps, auto = client.AppsV1Api(k8s), client.AutoscalingV2Api(k8s)
        apps.create_namespaced_deployment("default", deployment("web", replicas=1, probe=False))
        auto.create_namespaced_horizontal_pod_autoscaler("default", {
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": max_replicas,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
                     **({"behavior": behavior} if behavior else {})}})
        yield clock, apps, auto
        k8s.close()
    finally:
        c.stop()


def test_hpa_scales_up_fast_and_down_after_the_window(tmp_path):
    metrics = {"web": 200.0}
    with hpa_on_fake_clock(metrics, max_replicas=4) as (clock, apps, auto):
        wait_for(lambda: apps.read_namespaced_deployment("web", "default").spec.replicas == 4, timeout=10,
                 what="scale up to max")
        hpa = auto.read_namespaced_horizontal_pod_autoscaler("web", "default")
        assert hpa.status.desired_replicas == 4
        assert hpa.status.current_metrics[0].resource.current.average_utilization == 200
        metrics["web"] = 10.0
        time.sleep(1.0)  # many sync periods, but the (fake) clock has not moved
        assert apps.read_namespaced_deployment("web", "default").spec.replicas == 4
        clock.t += 301  # past the default 300 s scale-down stabilization window
        wait_for(lambda: apps.read_namespaced_deployment("web", "default").spec.replicas == 1, timeout=10,
                 what="scale down after the window")
        metrics.pop("web")
        time.sleep(0.5)
        hpa = auto.read_namespaced_horizontal_pod_autoscaler("web", "default")
        assert any(cd.type == "ScalingActive" and cd.status == "False" for cd in hpa.status.conditions)


def test_hpa_behavior_policies_limit_the_rate_and_can_disable_a_direction(tmp_path):
    metrics = {"web": 400.0}
    behavior = {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                "scaleDown": {"selectPolicy": "Disabled"}}
    with hpa_on_fake_clock(metrics, max_replicas=5, behavior=behavior) as (clock, apps, auto):
        def replicas():
            return apps.read_namespaced_deployment("web", "default").spec.replicas

        wait_for(lambda: replicas() == 2, timeout=10, what="one pod more")
        time.sleep(1.0)  # many sync periods within the same 60 s policy period
        assert replicas() == 2
        limited = next(cd for cd in auto.read_namespaced_horizontal_pod_autoscaler("web", "default").status.conditions
                       if cd.type == "ScalingLimited")
        assert (limited.status, limited.reason) == ("True", "ScaleUpLimit")
        clock.t += 61
        wait_for(lambda: replicas() == 3, timeout=10, what="one more in the next period")
        metrics["web"] = 5.0
        clock.t += 400  # past every window: scaling down is disabled all the same
        time.sleep(1.0)
        assert replicas() == 3


@pytest.mark.parametrize("current, proposed, behavior, changes, expected", [
    (1, 10, {}, [], 5),                                  # defaults: max(+100 %, +4 pods)
    (10, 40, {}, [], 20),                                # +100 % beats +4
    (4, 10, {}, [(995.0, 3)], 5),                        # 3 added in this period: from 1, +4 pods
    (10, 1, {}, [], 1),                                  # down: 100 % per 15 s
    (10, 1, {"scaleDown": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}}, [], 8),
    (10, 1, {"scaleDown": {"policies": [{"type": "Percent", "value": 10, "periodSeconds": 60},
                                        {"type": "Pods", "value": 3, "periodSeconds": 60}],
                           "selectPolicy": "Min"}}, [], 9),
    (2, 8, {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60},
                                     {"type": "Percent", "value": 200, "periodSeconds": 60}],
                        "selectPolicy": "Min"}}, [], 3),
    (2, 8, {"scaleUp": {"selectPolicy": "Disabled"}}, [], 2),
    (5, 5, {}, [], 5),
])
def test_hpa_behavior_policy_arithmetic(current, proposed, behavior, changes, expected):
    from aml_emulator.cluster.controllers import limit_by_policies

    assert limit_by_policies(current, proposed, behavior, changes, now=1000.0) == expected


def test_stop_leaves_no_processes(tmp_path):
    c = ClusterService(backoff_base=0.3).start()
    spawner = ("import subprocess, sys, time\n"
               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
               "print('spawned', flush=True)\ntime.sleep(120)\n")
    try:
        from kubernetes import config
        k8s = config.new_client_from_config(config_file=str(c.kubeconfig_path))
        apps = client.AppsV1Api(k8s)
        d = deployment("orph", replicas=2, probe=False)
        d["spec"]["template"]["spec"]["containers"][0]["command"] = [sys.executable, "-c", spawner]
        apps.create_namespaced_deployment("default", d)
        groups = wait_for(lambda: c.kubelet.process_groups() if len(c.kubelet.process_groups()) == 2 else None,
                          timeout=15, what="two pod process groups")
        names = [p.metadata.name for p in client.CoreV1Api(k8s).list_namespaced_pod("default").items]
        wait_for(lambda: all(b"spawned" in (c.kubelet.read_logs("default", n, "web") or b"") for n in names),
                 timeout=15, what="grandchildren spawned")
        k8s.close()
    finally:
        c.stop()
    wait_for(lambda: not any(group_alive(g) for g in groups), timeout=10, what="no process of any pod group left")


def test_workloads_come_back_after_a_restart(tmp_path):
    from kubernetes import config
    state = tmp_path / "state"
    c = ClusterService(state_dir=state, backoff_base=0.3).start()
    try:
        k8s = config.new_client_from_config(config_file=str(c.kubeconfig_path))
        apps, v1 = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
        d = deployment("web", replicas=2)
        # a window after each start in which the pod cannot be ready yet
        d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["initialDelaySeconds"] = 2
        apps.create_namespaced_deployment("default", d)
        v1.create_namespaced_service("default", service("web"))
        wait_for(_ready(apps, "web", 2), timeout=30, what="ready")
        url = _service_url(v1, "web")
        old_groups = c.kubelet.process_groups()
        k8s.close()
    finally:
        c.stop()
    assert not any(group_alive(g) for g in old_groups)
    c = ClusterService(state_dir=state, backoff_base=0.3).start()
    try:
        k8s = config.new_client_from_config(config_file=str(c.kubeconfig_path))
        apps, v1 = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
        # stale readiness from the previous run is never reported
        pods = v1.list_namespaced_pod("default").items
        assert len(pods) == 2 and not any(cs.ready for p in pods for cs in p.status.container_statuses)
        wait_for(lambda: all(p.status.container_statuses and p.status.container_statuses[0].ready
                             for p in v1.list_namespaced_pod("default").items), timeout=30, what="ready again")
        assert _service_url(v1, "web") == url
        def served() -> bool:
            try:
                return http_get(url)[1] == b"v1"
            except OSError:  # endpoints or the listener may lag the pods by a moment
                return False
        wait_for(served, timeout=10, what="served after restart")
        k8s.close()
    finally:
        c.stop()


class PullingRuntime:
    """A runtime in the shape of the image-based one: sees the pod's image and decoded pull
    secrets, fails the first pull, then runs the container's command as a host process (the
    process runtime's explicit opt-in)."""

    def __init__(self) -> None:
        from aml_emulator.cluster import ProcessRuntime
        self.inner = ProcessRuntime()
        self.calls: list[tuple[str, dict]] = []

    def start(self, pod, container, *, env, ports, log, workdir, pull_auth):
        from aml_emulator.cluster import ImagePullError
        self.calls.append((container["image"], pull_auth))
        if len(self.calls) == 1:
            raise ImagePullError(f"manifest unknown: {container['image']}")
        return self.inner.start(pod, dict(container, image=HOST_PROCESS_IMAGE), env=env, ports=ports, log=log,
                                workdir=workdir, pull_auth=pull_auth)

    def poll(self, handle):
        return self.inner.poll(handle)

    def kill(self, handle, grace):
        self.inner.kill(handle, grace)

    def logs(self, handle):
        return self.inner.logs(handle)


def test_pod_runtime_seam_gets_image_and_pull_secrets(tmp_path):
    import base64
    import json as _json

    from aml_emulator.cluster import PodRuntime, ProcessRuntime
    assert isinstance(ProcessRuntime(), PodRuntime)
    runtime = PullingRuntime()
    assert isinstance(runtime, PodRuntime)
    c = ClusterService(pod_runtime=runtime, backoff_base=0.3).start()
    try:
        from kubernetes import config
        k8s = config.new_client_from_config(config_file=str(c.kubeconfig_path))
        v1 = client.CoreV1Api(k8s)
        dockercfg = {"auths": {"127.0.0.1:5000": {"auth": base64.b64encode(b"puller:pw").decode()}}}
        v1.create_namespaced_secret("default", {"metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
                                                "data": {".dockerconfigjson": base64.b64encode(_json.dumps(dockercfg).encode()).decode()}})
        v1.create_namespaced_pod("default", {"metadata": {"name": "img"}, "spec": {
            "imagePullSecrets": [{"name": "regcred"}],
            "containers": [{"name": "app", "image": "127.0.0.1:5000/models/scorer:3",
                            "command": [sys.executable, "-c", "import time; print('ok', flush=True); time.sleep(30)"]}]}})

        def reason():
            st = v1.read_namespaced_pod("img", "default").status
            cs = st.container_statuses if st else None
            return cs and (cs[0].state.waiting.reason if cs[0].state.waiting else "running" if cs[0].state.running else None)
        wait_for(lambda: reason() == "ErrImagePull", timeout=10, what="ErrImagePull")
        wait_for(lambda: reason() == "running", timeout=10, what="running after the retry")
        assert runtime.calls[0] == ("127.0.0.1:5000/models/scorer:3", {"127.0.0.1:5000": {"username": "puller", "password": "pw"}})
        k8s.close()
    finally:
        c.stop()


def test_reset_returns_to_a_fresh_cluster(k8s, cluster):
    apps, v1 = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    apps.create_namespaced_deployment("default", deployment("r", replicas=2, probe=False))
    v1.create_namespace({"metadata": {"name": "extra"}})
    groups = wait_for(lambda: cluster.kubelet.process_groups() if len(cluster.kubelet.process_groups()) == 2 else None,
                      timeout=15, what="pods running")
    rv = int(v1.list_namespace().metadata.resource_version)
    cluster.reset()
    assert not any(group_alive(g) for g in groups)
    assert apps.list_namespaced_deployment("default").items == []
    assert v1.list_namespaced_pod("default").items == []
    # the built-in namespaces, and azureml where the front door says where it is
    assert sorted(n.metadata.name for n in v1.list_namespace().items) == ["azureml", "default", "kube-node-lease", "kube-public", "kube-system"]
    assert int(v1.list_namespace().metadata.resource_version) > rv


def test_load_balancer_replays_a_request_a_backend_dropped_unanswered(k8s, cluster):
    import socket

    def backend(answer: bytes | None):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        stop = threading.Event()

        def serve():
            srv.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except OSError:
                    continue
                with conn:
                    conn.recv(65536)
                    if answer:
                        conn.sendall(answer)
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        return srv, stop, t
    dropper = backend(None)
    good = backend(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\ngood")
    v1 = client.CoreV1Api(k8s)
    try:
        v1.create_namespaced_service("default", {"metadata": {"name": "manual"},
                                                 "spec": {"ports": [{"port": 80, "name": "http"}]}})
        v1.create_namespaced_endpoints("default", {"metadata": {"name": "manual"}, "subsets": [
            {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": dropper[0].getsockname()[1]}]},
            {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": good[0].getsockname()[1]}]}]})
        url = _service_url(v1, "manual")
        for _ in range(6):
            assert http_get(url) == (200, b"good")
    finally:
        for srv, stop, t in (dropper, good):
            stop.set()
            t.join(5)
            srv.close()


def test_min_ready_seconds_delays_availability(k8s, cluster):
    apps = client.AppsV1Api(k8s)
    d = deployment("slow", replicas=1, probe=False)
    d["spec"]["minReadySeconds"] = 2
    apps.create_namespaced_deployment("default", d)
    wait_for(lambda: (apps.read_namespaced_deployment("slow", "default").status or client.V1DeploymentStatus()).ready_replicas == 1,
             timeout=20, what="ready")
    assert not (apps.read_namespaced_deployment("slow", "default").status.available_replicas or 0)
    wait_for(lambda: apps.read_namespaced_deployment("slow", "default").status.available_replicas == 1,
             timeout=10, what="available after minReadySeconds")


def test_startup_and_exec_probes_gate_readiness(k8s, cluster, tmp_path):
    v1 = client.CoreV1Api(k8s)
    flag = tmp_path / "ready-flag"
    v1.create_namespaced_pod("default", {"metadata": {"name": "gated"}, "spec": {"containers": [
        {"name": "app", "image": HOST_PROCESS_IMAGE, "command": [sys.executable, "-c", "import time; time.sleep(60)"],
         "startupProbe": {"exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 1, "failureThreshold": 30},
         "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]}})

    def status():
        st = v1.read_namespaced_pod("gated", "default").status
        return st.container_statuses[0] if st and st.container_statuses else None
    wait_for(lambda: status() and status().state.running, timeout=15, what="running")
    time.sleep(1.5)
    cs = status()
    assert cs.started is False and cs.ready is False  # the startup probe has not passed yet
    flag.write_text("go")
    wait_for(lambda: status().started and status().ready, timeout=10, what="started and ready")


def test_pods_die_with_a_host_that_exits_without_stop(tmp_path):
    import subprocess
    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from cluster_testing import deployment, wait_for
from aml_emulator.cluster import ClusterService
c = ClusterService(backoff_base=0.3).start()
from aml_emulator.cluster.models import lookup
d = deployment("host", replicas=2, probe=False)
d["metadata"]["namespace"] = "default"
c.store.create(lookup("apps", "v1", "deployments"), d)
groups = wait_for(lambda: c.kubelet.process_groups() if len(c.kubelet.process_groups()) == 2 else None, timeout=20)
print(",".join(map(str, groups)), flush=True)
raise SystemExit("exiting without stop()")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    groups = [int(g) for g in r.stdout.strip().split(",") if g]
    assert len(groups) == 2, r.stderr
    wait_for(lambda: not any(group_alive(g) for g in groups), timeout=10, what="pods killed at host exit")


def test_a_container_whose_main_process_exits_leaves_nothing_it_started_running(tmp_path):
    """Like a container's PID 1: when the command exits, its background children go too."""
    from aml_core.engines.process import group_members
    from aml_emulator.cluster import ProcessRuntime
    from aml_emulator.cluster.kubelet import ContainerLog

    runtime = ProcessRuntime()
    script = "sleep 300 & echo started; exit 3"
    handle = runtime.start({"metadata": {"name": "p"}}, {"name": "c", "image": HOST_PROCESS_IMAGE, "command": ["/bin/sh", "-c", script]},
                           env={}, ports={}, log=ContainerLog(tmp_path / "log"), workdir=tmp_path)
    wait_for(lambda: runtime.poll(handle) is not None, timeout=10, what="the main process exits")
    assert runtime.poll(handle) == 3
    wait_for(lambda: not group_members(handle.pgid), timeout=10, what="the background sleep is gone")
    # the log pump ends once no process of the group holds the output pipe
    handle.pump.join(10)
    assert not handle.pump.is_alive() and b"started" in runtime.logs(handle).read()



def test_the_hpa_replicas_column_follows_a_scale_between_syncs(tmp_path):
    """``kubectl scale`` on an autoscaled Deployment: until the HPA's next sync (which may
    set the count back) its status, kubectl's REPLICAS column, shows the count there is."""
    # the fake clock stands still, so after its first sync the HPA never syncs again here
    with hpa_on_fake_clock({"web": 50.0}, max_replicas=4, sync_period=15.0) as (clock, apps, auto):
        def hpa_replicas():
            status = auto.read_namespaced_horizontal_pod_autoscaler("web", "default").status
            return status.current_replicas if status else None

        wait_for(lambda: hpa_replicas() == 1, timeout=10, what="the first sync")
        apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 3}})
        wait_for(lambda: hpa_replicas() == 3, timeout=10, what="REPLICAS following the scale")
        assert apps.read_namespaced_deployment("web", "default").spec.replicas == 3
