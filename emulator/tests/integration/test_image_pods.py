"""The emulator's kubelet runs packaged images: Model.package pushes the quickstart image to
the emulator's registry, the official ``kubernetes`` client deploys it with an
imagePullSecret, and it scores through the Service's load balancer."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import requests

from aml_core import Environment, InferenceConfig, Model, Workspace
from aml_emulator import Emulator

QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart"
SAMPLE = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """A running emulator with the quickstart image pushed to its registry."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    tmp = tmp_path_factory.mktemp("imagepods")
    mp = pytest.MonkeyPatch()
    mp.setenv("AML_PROFILE_DIR", str(tmp / "profiles"))
    try:
        with Emulator() as emu:
            emu.profile().save()
            ws = Workspace.create(tmp / "ws", container_registry="profile:emulator")
            x, y = load_diabetes(return_X_y=True)
            joblib.dump(Ridge().fit(x, y), tmp / "sklearn_regression_model.pkl")
            model = Model.register(ws, tmp / "sklearn_regression_model.pkl", "sklearn_regression_model")
            env = Environment.from_pip_requirements("qs", QUICKSTART / "requirements.txt")
            config = InferenceConfig(entry_script="score.py", source_directory=str(QUICKSTART), environment=env)
            package = Model.package(ws, [model], config, image_name="quickstart")
            yield emu, package
    finally:
        mp.undo()


@pytest.fixture
def k8s(packaged):
    from kubernetes import client, config

    emu, _ = packaged
    api_client = config.new_client_from_config(config_file=str(emu.cluster.kubeconfig_path))
    ns = f"imgpods-{int(time.time() * 1000) % 10**8}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": ns}})
    try:
        yield api_client, ns
    finally:
        client.CoreV1Api(api_client).delete_namespace(ns)
        api_client.close()


def _pull_secret(emu, password: str | None = None) -> dict:
    login = emu.registry.login_server
    user = emu.registry.credentials.username
    password = password or emu.registry.credentials.passwords["password"]
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    cfg = {"auths": {login: {"username": user, "password": password, "auth": auth}}}
    return {"metadata": {"name": "acr"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(cfg).encode()).decode()}}


def _deployment(image: str, *, secret: bool = True) -> dict:
    pod_spec = {"containers": [{"name": "score", "image": image, "ports": [{"containerPort": 5001, "name": "http"}],
                                "readinessProbe": {"httpGet": {"path": "/", "port": 5001}, "periodSeconds": 1}}]}
    if secret:
        pod_spec["imagePullSecrets"] = [{"name": "acr"}]
    return {"metadata": {"name": "quickstart"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "quickstart"}},
                     "template": {"metadata": {"labels": {"app": "quickstart"}}, "spec": pod_spec}}}


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_deployment_of_a_packaged_image_scores_through_its_load_balancer(packaged, k8s):
    from kubernetes import client

    emu, package = packaged
    api_client, ns = k8s
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    core.create_namespaced_secret(ns, _pull_secret(emu))
    apps.create_namespaced_deployment(ns, _deployment(package.image_location))
    core.create_namespaced_service(ns, {"metadata": {"name": "quickstart"}, "spec": {
        "type": "LoadBalancer", "selector": {"app": "quickstart"}, "ports": [{"port": 80, "targetPort": 5001}]}})

    _wait(lambda: ((apps.read_namespaced_deployment_status("quickstart", ns).status or client.V1DeploymentStatus()).ready_replicas or 0) >= 1,
          180, "the image's pod to become ready")
    url = _wait(lambda: (core.read_namespaced_service("quickstart", ns).metadata.annotations or {}).get(
        "emulator.aml/url"), 20, "the load balancer URL")
    response = requests.post(f"{url}/score", json=SAMPLE, timeout=30)
    assert response.status_code == 200, response.text
    predictions = response.json()
    assert isinstance(predictions, list) and len(predictions) == 2 and predictions[0] != predictions[1]

    pod = core.list_namespaced_pod(ns, label_selector="app=quickstart").items[0]
    assert pod.status.container_statuses[0].image == package.image_location
    # the scoring runtime's start-up output is the pod's log
    assert core.read_namespaced_pod_log(pod.metadata.name, ns, container="score")


@pytest.mark.parametrize("secret", ["missing", "wrong"])
def test_a_pod_without_valid_pull_credentials_is_refused(packaged, k8s, secret):
    from kubernetes import client

    emu, package = packaged
    api_client, ns = k8s
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    if secret == "wrong":
        core.create_namespaced_secret(ns, _pull_secret(emu, password="not-the-password"))
    apps.create_namespaced_deployment(ns, _deployment(package.image_location, secret=secret == "wrong"))

    def waiting_reason():
        pods = core.list_namespaced_pod(ns, label_selector="app=quickstart").items
        for pod in pods:
            for status in pod.status.container_statuses or []:
                if status.state and status.state.waiting and status.state.waiting.reason in (
                        "ErrImagePull", "ImagePullBackOff"):
                    return status.state.waiting
        return None

    waiting = _wait(waiting_reason, 60, "ErrImagePull")
    assert "pull access denied" in waiting.message
    assert emu.registry.credentials.passwords["password"] not in waiting.message


def test_kubectl_port_forward_scores_the_model_and_exec_runs_in_its_image(packaged, k8s, tmp_path):
    """What a user does when a deployment misbehaves: forward a local port to the scoring
    pod and score through it with ``requests``; exec into the pod."""
    import socket
    import subprocess

    from kubernetes import client

    emu, package = packaged
    api_client, ns = k8s
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    core.create_namespaced_secret(ns, _pull_secret(emu))
    apps.create_namespaced_deployment(ns, _deployment(package.image_location))
    _wait(lambda: ((apps.read_namespaced_deployment_status("quickstart", ns).status or client.V1DeploymentStatus()).ready_replicas or 0) >= 1,
          180, "the image's pod to become ready")
    kubectl = ["kubectl", "--kubeconfig", str(emu.cluster.kubeconfig_path), "--cache-dir", str(tmp_path / "cache"), "-n", ns]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    forward = subprocess.Popen([*kubectl, "port-forward", "deploy/quickstart", f"{local}:5001"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert forward.stdout.readline().startswith(f"Forwarding from 127.0.0.1:{local} -> 5001")
        with requests.Session() as session:
            assert session.get(f"http://127.0.0.1:{local}/", timeout=30).status_code == 200
            response = session.post(f"http://127.0.0.1:{local}/score", json=SAMPLE, timeout=30)
        assert response.status_code == 200, response.text
        assert len(response.json()) == 2
    finally:
        forward.terminate()
        forward.communicate(timeout=20)

    pod = core.list_namespaced_pod(ns, label_selector="app=quickstart").items[0].metadata.name
    out = subprocess.run([*kubectl, "exec", pod, "--", "sh", "-c", "echo $AML_PORT; pwd"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    port, cwd = out.stdout.split()
    ports = json.loads(core.read_namespaced_pod(pod, ns).metadata.annotations["emulator.aml/ports"])
    assert port == str(ports["5001"])  # the scoring runtime's environment
    assert "/images/" in cwd  # the image's working directory inside its unpacked root
