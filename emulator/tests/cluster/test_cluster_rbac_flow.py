"""End to end: install a controller into the emulated cluster the way one installs it into a
real one (ServiceAccount, ClusterRole + ClusterRoleBinding, a Secret mounted as a volume, a
Deployment with ``serviceAccountName``), all through the official ``kubernetes`` client; the
pod reads its mounted secret and calls the API server in-cluster with the token the kubelet
projects, and RBAC decides what it may do. The outcome is read from the pod's log, through
the client and through kubectl."""

from __future__ import annotations

import json
import sys
import textwrap

from cluster_testing import wait_for
from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE

# Reads the secret file and the token dir named in its args *by their in-pod paths*: only
# the kubelet's mount-path rewriting makes them resolve on the host.
IN_CLUSTER_SCRIPT = textwrap.dedent("""\
    import json, os, sys
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.incluster_config import InClusterConfigLoader

    secret_file, sa_dir = sys.argv[1], sys.argv[2]
    out = {"secret": open(secret_file).read(), "namespace_file": open(sa_dir + "/namespace").read(),
           "host": os.environ["KUBERNETES_SERVICE_HOST"], "port": os.environ["KUBERNETES_SERVICE_PORT"]}
    cfg = client.Configuration()
    InClusterConfigLoader(token_filename=sa_dir + "/token", cert_filename=sa_dir + "/ca.crt").load_and_set(cfg)
    with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        out["secrets"] = sorted(f"{s.metadata.namespace}/{s.metadata.name}"
                                for s in core.list_secret_for_all_namespaces().items)
        try:
            core.list_namespaced_pod("fe-system")
            out["pods"] = "allowed"
        except ApiException as e:
            out["pods"] = {"status": e.status, "message": json.loads(e.body)["message"]}
    print("RESULT " + json.dumps(out), flush=True)
    """)


def _result(text: str) -> dict | None:
    for line in text.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return None


def test_a_controller_runs_under_its_service_account_with_rbac_and_a_mounted_secret(cluster, k8s, kubectl, tmp_path):
    from kubernetes import client

    core, rbac, apps = client.CoreV1Api(k8s), client.RbacAuthorizationV1Api(k8s), client.AppsV1Api(k8s)
    script = tmp_path / "controller.py"
    script.write_text(IN_CLUSTER_SCRIPT)
    ns = "fe-system"
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_service_account(ns, {"metadata": {"name": "fe"}})
    rbac.create_cluster_role({"metadata": {"name": "secret-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}]})
    rbac.create_cluster_role_binding({"metadata": {"name": "fe-secret-reader"},
                                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                  "name": "secret-reader"},
                                      "subjects": [{"kind": "ServiceAccount", "name": "fe", "namespace": ns}]})
    core.create_namespaced_secret(ns, {"metadata": {"name": "fe-admin"}, "stringData": {"admin-token": "s3cret"}})
    container = {"name": "controller", "image": HOST_PROCESS_IMAGE, "command": [sys.executable, str(script)],
                 "args": ["/etc/fe/admin-token", "/var/run/secrets/kubernetes.io/serviceaccount"],
                 "volumeMounts": [{"name": "admin", "mountPath": "/etc/fe", "readOnly": True}]}
    apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "fe"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "fe"}},
                 "template": {"metadata": {"labels": {"app": "fe"}}, "spec": {
                     "serviceAccountName": "fe", "restartPolicy": "Always", "containers": [container],
                     "volumes": [{"name": "admin", "secret": {"secretName": "fe-admin", "defaultMode": 0o400,
                                                              "items": [{"key": "admin-token", "path": "admin-token"}]}}]}}}})

    def pod_log() -> str | None:
        pods = core.list_namespaced_pod(ns, label_selector="app=fe").items
        if not pods:
            return None
        try:
            text = core.read_namespaced_pod_log(pods[0].metadata.name, ns)
        except client.ApiException:
            return None
        return text if "RESULT " in text else None

    log = wait_for(pod_log, timeout=60, what="the controller's result in its log")
    result = _result(log)
    assert result is not None, log
    assert result["secret"] == "s3cret"
    assert result["namespace_file"] == ns
    assert result["host"] == "127.0.0.1" and result["port"] == str(cluster.server.port)
    assert f"{ns}/fe-admin" in result["secrets"] and "azureml/azureml-fe" in result["secrets"]
    assert result["pods"] == {"status": 403, "message": (
        'pods is forbidden: User "system:serviceaccount:fe-system:fe" cannot list resource "pods" '
        'in API group "" in the namespace "fe-system"')}

    pod = core.list_namespaced_pod(ns, label_selector="app=fe").items[0]
    assert pod.spec.service_account_name == "fe"
    printed = kubectl.run("-n", ns, "logs", pod.metadata.name).stdout
    assert _result(printed) == result
    # the secret's file has its defaultMode; the token dir holds token, ca.crt and namespace
    worker = cluster.kubelet.workers[(ns, pod.metadata.name)]
    assert (worker.mounted["admin"] / "admin-token").stat().st_mode & 0o777 == 0o400
    sa_dir = worker.mounted[worker.sa_volume]
    assert (sa_dir / "ca.crt").read_bytes() == cluster.ca_path.read_bytes()
    assert sorted(p.name for p in sa_dir.iterdir() if not p.name.startswith("..")) == ["ca.crt", "namespace", "token"]
    assert "fe" in kubectl.run("-n", ns, "get", "serviceaccount").stdout
    listed = kubectl.run("get", "clusterrolebinding", "fe-secret-reader", "-o", "wide").stdout
    assert "ClusterRole/secret-reader" in listed and f"{ns}/fe" in listed
