"""The front door's limits as an AKS user sets them: scoring_timeout_ms → 504,
replica_max_concurrent_requests + max_request_wait_time → 503, and routes that survive an
emulator restart on the same state."""

from __future__ import annotations

import concurrent.futures
import time

import requests

from aml_core.compute import ComputeTarget
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_provider_aks import AksCompute, AksWebservice

SLEEPY = """
import json
import time


def init():
    pass


def run(raw_data):
    time.sleep(json.loads(raw_data)["sleep"])
    return {"slept": json.loads(raw_data)["sleep"]}
"""


def test_timeout_gives_504_and_a_full_replica_gives_503(emulator, ws, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "score.py").write_text(SLEEPY)
    (tmp_path / "model.txt").write_text("no weights needed")
    model = Model.register(ws, str(tmp_path / "model.txt"), "sleepy")
    target = ComputeTarget.create(ws, "aks-fd", AksCompute.provisioning_configuration(cluster_purpose="DevTest",
                                                                                      agent_count=1))
    target.wait_for_completion()
    config = AksWebservice.deploy_configuration(num_replicas=1, scoring_timeout_ms=1500,
                                                replica_max_concurrent_requests=1, max_request_wait_time=200)
    service = Model.deploy(ws, "sleepy", [model], InferenceConfig(entry_script="score.py", source_directory=str(app)),
                           config, target)
    service.wait_for_deployment()
    try:
        headers = {"Authorization": f"Bearer {service.get_keys()[0]}"}

        def post(sleep: float) -> requests.Response:
            return requests.post(service.scoring_uri, json={"sleep": sleep}, headers=headers, timeout=30)

        assert post(0).json() == {"slept": 0}
        # one replica, one request at a time, 200 ms of queue: of three 1 s requests sent
        # together, one is served and the others wait out the queue and get 503
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            codes = sorted(r.status_code for r in pool.map(post, [1.0, 1.0, 1.0]))
        assert codes[0] == 200 and 503 in codes, codes
        assert post(0).status_code == 200
        # last: the replica goes on sleeping after the front door has given up
        slow = post(5)
        assert slow.status_code == 504 and "1500 ms" in slow.json()["error"]["message"]
    finally:
        service.delete()


def test_routes_survive_an_emulator_restart_on_the_same_state(tmp_path, monkeypatch):
    """The front door keeps no routes of its own: after a restart it reads them back from the
    cluster, and the service's scoring URI follows the front door's new address."""
    from aml_core.webservice import Webservice
    from aml_core.workspace import Workspace
    from aml_emulator import Emulator

    monkeypatch.setenv("AML_PROFILE_DIR", str(tmp_path / "profiles"))
    state = tmp_path / "emulator-state"
    ws = Workspace.create(tmp_path / "ws", container_registry="profile:emulator")
    app = tmp_path / "app"
    app.mkdir()
    (app / "score.py").write_text(SLEEPY)
    (tmp_path / "model.txt").write_text("no weights needed")
    with Emulator(state) as emu:
        emu.profile().save()
        model = Model.register(ws, str(tmp_path / "model.txt"), "sleepy")
        target = ComputeTarget.create(ws, "aks-rs", AksCompute.provisioning_configuration(
            cluster_purpose="DevTest", agent_count=1))
        target.wait_for_completion()
        service = Model.deploy(ws, "survivor", [model],
                               InferenceConfig(entry_script="score.py", source_directory=str(app)),
                               AksWebservice.deploy_configuration(num_replicas=1), target)
        service.wait_for_deployment()
        assert service.run({"sleep": 0}) == {"slept": 0}
    with Emulator(state) as emu:
        emu.profile().save()
        again = Webservice(ws, "survivor")
        deadline = time.monotonic() + 120
        while again.update_deployment_state() != "Healthy" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert again.state == "Healthy", again.error
        assert again.scoring_uri == service.scoring_uri  # the front door kept its port
        assert again.run({"sleep": 0}) == {"slept": 0}
        again.delete()
