"""kubectl v1.32 against the emulated cluster: discovery, Table printing, apply (client-
and server-side), scale, rollout status, logs, delete, -o yaml, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from cluster_testing import deployment, service, wait_for
from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE


def test_version_and_discovery(kubectl):
    out = kubectl.run("version", "-o", "json").stdout
    assert json.loads(out)["serverVersion"]["minor"] == "32"
    res = kubectl.run("api-resources").stdout
    for line in ("deployments", "horizontalpodautoscalers", "hpa", "deploy", "autoscaling/v2"):
        assert line in res


def test_unauthenticated_requests_are_refused(cluster, tmp_path):
    cfg = yaml.safe_load(cluster.kubeconfig_path.read_text())
    cfg["users"][0]["user"]["token"] = "wrong-token"
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(yaml.safe_dump(cfg))
    r = subprocess.run(["kubectl", "--kubeconfig", str(bad), "--cache-dir", str(tmp_path / "c"), "get", "pods"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "provide credentials" in r.stderr or "Unauthorized" in r.stderr


def test_apply_rollout_get_scale_logs_delete(kubectl, cluster):
    manifest = yaml.safe_dump_all([deployment("web", "v1", replicas=2), service("web")])
    out = kubectl.run("apply", "-f", "-", input=manifest).stdout
    assert "deployment.apps/web created" in out and "service/web created" in out
    kubectl.run("rollout", "status", "deployment/web", "--timeout=60s")

    table = kubectl.run("get", "pods").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert len(table) == 3 and all(" 1/1 " in row and "Running" in row for row in table[1:])
    deploy = kubectl.run("get", "deployments").stdout.splitlines()
    assert deploy[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deploy[1].split()[:4] == ["web", "2/2", "2", "2"]
    svc = kubectl.run("get", "svc", "web").stdout.splitlines()
    assert svc[0].split()[:5] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"]
    assert "80/TCP" in svc[1]

    # apply update: a new template → a new replica set, rolled out
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(deployment("web", "v2", replicas=2)))
    kubectl.run("rollout", "status", "deployment/web", "--timeout=60s")
    d = kubectl.json("get", "deployment", "web")
    assert d["metadata"]["generation"] == 2 and d["status"]["observedGeneration"] == 2
    assert d["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "VERSION", "value": "v2"}]
    rs = kubectl.json("get", "rs")["items"]
    assert sorted(r["spec"]["replicas"] for r in rs) == [0, 2]

    kubectl.run("scale", "deployment/web", "--replicas=3")
    kubectl.run("rollout", "status", "deployment/web", "--timeout=60s")
    assert kubectl.json("get", "deployment", "web")["status"]["readyReplicas"] == 3

    pods = wait_for(lambda: [p for p in kubectl.json("get", "pods", "-l", "app=web")["items"]
                             if not p["metadata"].get("deletionTimestamp")] if True else None, what="pods")
    name = pods[0]["metadata"]["name"]
    logs = kubectl.run("logs", name).stdout
    assert "listening on" in logs
    assert kubectl.run("logs", name, "-c", "web", "--tail=1").stdout.count("\n") == 1

    y = yaml.safe_load(kubectl.run("get", "deployment", "web", "-o", "yaml").stdout)
    assert y["kind"] == "Deployment" and y["spec"]["replicas"] == 3

    assert 'deployment.apps "web" deleted' in kubectl.run("delete", "deployment", "web").stdout
    wait_for(lambda: not kubectl.json("get", "pods")["items"], timeout=30, what="pods garbage-collected")
    assert kubectl.json("get", "rs")["items"] == []


def test_server_side_apply_and_conflict(kubectl):
    manifest = yaml.safe_dump(deployment("ssa", "v1", replicas=1, probe=False))
    out = kubectl.run("apply", "--server-side", "-f", "-", input=manifest).stdout
    assert "serverside-applied" in out
    other = deployment("ssa", "v1", replicas=4, probe=False)
    r = kubectl.run("apply", "--server-side", "--field-manager=other", "-f", "-", input=yaml.safe_dump(other), check=False)
    assert r.returncode != 0 and 'conflict with "kubectl": .spec.replicas' in r.stderr
    kubectl.run("apply", "--server-side", "--force-conflicts", "--field-manager=other", "-f", "-", input=yaml.safe_dump(other))
    assert kubectl.json("get", "deployment", "ssa")["spec"]["replicas"] == 4


def test_errors_print_reason(kubectl):
    r = kubectl.run("get", "deployment", "missing", check=False)
    assert r.returncode != 0
    assert 'Error from server (NotFound): deployments.apps "missing" not found' in r.stderr
    cm = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}})
    kubectl.run("create", "-f", "-", input=cm)
    r = kubectl.run("create", "-f", "-", input=cm, check=False)
    assert r.stderr.startswith("Error from server (AlreadyExists)") and 'configmaps "cfg" already exists' in r.stderr
    assert kubectl.run("delete", "configmap", "missing", "--ignore-not-found").returncode == 0


def _configmap(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})


def test_typed_create_helpers_send_protobuf_and_work(kubectl, cluster):
    kubectl.run("create", "namespace", "team")
    kubectl.run("create", "configmap", "cfg", "--from-literal=a=1", "-n", "team")
    kubectl.run("create", "secret", "generic", "creds", "--from-literal=password=xyz")
    kubectl.run("create", "secret", "docker-registry", "regcred", "--docker-server=127.0.0.1:5000",
                "--docker-username=u", "--docker-password=p")
    kubectl.run("create", "deployment", "sleeper", "--image=python:3.11", "--replicas=1", "--", "sleep", "30")
    kubectl.run("expose", "deployment", "sleeper", "--port=80", "--target-port=8080")
    kubectl.run("autoscale", "deployment", "sleeper", "--max=3", "--cpu-percent=50")
    assert kubectl.json("get", "configmap", "cfg", "-n", "team")["data"] == {"a": "1"}
    assert kubectl.json("get", "secret", "creds")["data"] == {"password": "eHl6"}
    assert kubectl.json("get", "secret", "regcred")["type"] == "kubernetes.io/dockerconfigjson"
    d = kubectl.json("get", "deployment", "sleeper")
    assert d["spec"]["template"]["spec"]["containers"][0]["command"] == ["sleep", "30"]
    assert kubectl.json("get", "service", "sleeper")["spec"]["ports"][0]["targetPort"] == 8080
    hpa = kubectl.json("get", "hpa.v2.autoscaling", "sleeper")
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50


def test_get_watch_streams_table_rows(kubectl, cluster):
    kubectl.run("create", "-f", "-", input=_configmap("first"))
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(kubectl.kubeconfig), "--cache-dir", str(kubectl.cache_dir),
                             "get", "configmaps", "-w", "--request-timeout=0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: True, timeout=1)
        import time
        time.sleep(1.0)
        kubectl.run("create", "-f", "-", input=_configmap("second"))
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    lines = [l.split() for l in out.splitlines()]
    assert lines[0] == ["NAME", "DATA", "AGE"]
    assert any(l and l[0] == "second" for l in lines), out + err


def test_namespaces_and_events(kubectl):
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}))
    kubectl.run("apply", "-n", "team", "-f", "-", input=yaml.safe_dump(deployment("app", probe=False, replicas=1)))
    wait_for(lambda: kubectl.json("get", "pods", "-n", "team")["items"], what="a pod in team")
    ev = kubectl.run("get", "events", "-n", "team").stdout
    assert "SuccessfulCreate" in ev
    kubectl.run("delete", "namespace", "team", timeout=60)
    r = kubectl.run("get", "namespace", "team", check=False)
    assert "NotFound" in r.stderr


def test_rollout_restart_history_and_undo_reuses_the_old_replica_set(kubectl):
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(deployment("ru", replicas=1)))
    kubectl.run("rollout", "status", "deployment/ru", "--timeout=60s")
    first = {r["metadata"]["name"] for r in kubectl.json("get", "rs")["items"]}
    kubectl.run("rollout", "restart", "deployment/ru")
    kubectl.run("rollout", "status", "deployment/ru", "--timeout=60s")
    assert len(kubectl.json("get", "rs")["items"]) == 2
    history = kubectl.run("rollout", "history", "deployment/ru").stdout
    assert "REVISION" in history and "2 " in history
    kubectl.run("rollout", "undo", "deployment/ru")
    kubectl.run("rollout", "status", "deployment/ru", "--timeout=60s")
    rs = kubectl.json("get", "rs")["items"]
    assert len(rs) == 2
    active = [r["metadata"]["name"] for r in rs if r["spec"]["replicas"] == 1]
    assert active == sorted(first)


def test_strict_field_validation_names_the_typo(kubectl):
    bad = deployment("typo", replicas=1, probe=False)
    bad["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    r = kubectl.run("apply", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert r.returncode != 0
    assert 'unknown field "spec.template.spec.containers[0].comand"' in r.stderr


def test_rollout_status_fails_past_the_progress_deadline(kubectl):
    d = deployment("stuck", replicas=1)
    d["spec"]["progressDeadlineSeconds"] = 1
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = 1  # never ready
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(d))
    r = kubectl.run("rollout", "status", "deployment/stuck", "--timeout=30s", check=False)
    assert r.returncode != 0 and "exceeded its progress deadline" in r.stderr


def test_logs_follow_ends_when_the_pod_goes(kubectl, cluster):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"}, "spec": {"containers": [
        {"name": "app", "image": HOST_PROCESS_IMAGE, "command": [sys.executable, "-c",
         "import time\nfor i in range(100):\n    print('line', i, flush=True)\n    time.sleep(0.1)\n"]}]}}
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(pod))
    kubectl.run("wait", "--for=condition=Ready", "pod/talker", "--timeout=20s")
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(kubectl.kubeconfig), "--cache-dir", str(kubectl.cache_dir),
                             "logs", "-f", "talker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time
        time.sleep(1.0)
        kubectl.run("delete", "pod", "talker")
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    numbers = [int(l.split()[1]) for l in out.splitlines() if l.startswith("line")]
    assert numbers[:3] == [0, 1, 2] and len(numbers) >= 8
