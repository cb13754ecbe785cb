"""``install_frontdoor`` end to end on the emulator's cluster: the image our packaging builds,
pushed to the workspace's registry, pulled with the pull secret, run as a pod under its own
ServiceAccount with the RBAC the installer grants, its admin token mounted from a Secret; then
clients find it (ConfigMap ``azureml/azureml-fe``) and score a deployed model through it.

The emulator also runs its own in-process front door; the install replaces it as the one
clients locate, exactly as on a cluster that had none.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests
from aks_testing import wait_until
from aml_core.compute import ComputeTarget
from aml_core.images import workspace_registry
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_provider_aks import AksCompute, AksWebservice
from aml_provider_aks.deploy import Cluster
from aml_provider_aks.frontdoor import locate
from aml_provider_aks.frontdoor_install import install_frontdoor

SCORE = """
import json


def init():
    pass


def run(raw_data):
    return {"echo": json.loads(raw_data)}
"""


def test_the_installed_front_door_runs_our_image_and_serves_a_deployed_model(emulator, ws, tmp_path):
    target = ComputeTarget.create(ws, "aks-fe", AksCompute.provisioning_configuration(
        cluster_purpose="DevTest", agent_count=1))
    target.wait_for_completion()
    kubeconfig = ComputeTarget(ws, "aks-fe").record.details["kubeconfig"]
    registry = workspace_registry(ws)
    notes: list[str] = []
    installed = install_frontdoor(kubeconfig, registry=registry, timeout=120, progress=notes.append)
    assert any("Pushing azureml-fe:" in n for n in notes), notes

    with Cluster(kubeconfig) as c:
        (pod,) = c.core.list_namespaced_pod("azureml", label_selector="app=azureml-fe").items
        assert pod.spec.containers[0].image.startswith(f"{registry.address}/azureml-fe:")
        assert pod.spec.service_account_name == "azureml-fe" and pod.status.phase == "Running"
        assert locate(c.core).url == installed.url  # clients now find the installed one

    app = tmp_path / "app"
    app.mkdir()
    (app / "score.py").write_text(SCORE)
    (tmp_path / "model.txt").write_text("weights")
    model = Model.register(ws, str(tmp_path / "model.txt"), "fe-model")
    service = Model.deploy(ws, "via-pod", [model], InferenceConfig(entry_script="score.py", source_directory=str(app)),
                           AksWebservice.deploy_configuration(num_replicas=1), target)
    service.wait_for_deployment()
    try:
        assert service.state == "Healthy", service.error
        assert service.scoring_uri.startswith(installed.url)
        # routed once the pod's watches (its service-account token, its RBAC) see the entry
        key = service.get_keys()[0]

        def scored():
            answer = requests.post(service.scoring_uri, json={"data": [1]}, timeout=10,
                                   headers={"Authorization": f"Bearer {key}"})
            return answer.json() if answer.status_code == 200 else None

        assert wait_until("scored through the installed front door", scored, timeout=60) == {"echo": {"data": [1]}}
        wrong = requests.post(service.scoring_uri, json={"data": [1]}, timeout=10,
                              headers={"Authorization": "Bearer not-the-key"})
        assert wrong.status_code == 401
        # key rotation goes through the installed front door's admin API and is applied there
        service.regen_key("Primary")
        new_key = service.get_keys()[0]
        assert new_key != key
        assert service.run({"data": [2]}) == {"echo": {"data": [2]}}
    finally:
        service.delete()

    logs = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "-n", "azureml", "logs", "deployment/azureml-fe"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert logs.returncode == 0 and "front door listening on 127.0.0.1" in logs.stdout, logs.stderr


def test_a_second_install_from_the_cli_updates_in_place_and_keeps_the_admin_token(emulator, ws):
    target = ComputeTarget.create(ws, "aks-fe2", AksCompute.provisioning_configuration(
        cluster_purpose="DevTest", agent_count=1))
    target.wait_for_completion()
    kubeconfig = ComputeTarget(ws, "aks-fe2").record.details["kubeconfig"]
    first = install_frontdoor(kubeconfig, registry=workspace_registry(ws), timeout=120)
    aml = Path(sys.executable).parent / "aml"
    done = subprocess.run([str(aml), "--workspace", str(ws.root), "aks", "install-frontdoor", "--compute", "aks-fe2",
                           "--timeout", "120", "-o", "json"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["url"] == first.url
    with Cluster(kubeconfig) as c:
        assert locate(c.core).admin_token == first.admin_token
    answer = requests.get(f"{first.url}/-/services", headers={"Authorization": f"Bearer {first.admin_token}"},
                          timeout=10)
    assert answer.status_code == 200, answer.text
