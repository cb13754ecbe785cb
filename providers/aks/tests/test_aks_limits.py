"""memory_gb_limit on AKS: the cluster (the emulator's node) enforces it, and the service's
state, error and logs report an OOM kill as they would on AKS; a limit the node cannot
enforce (CPU, on the emulator) is in the service's ``details["warnings"]``."""

from __future__ import annotations

import time

import requests

from aml_core.compute import ComputeTarget
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_core.workspace import Workspace
from aml_provider_aks import AksCompute, AksWebservice

from aks_testing import emulator_with_profile


LEAKY = """
import json

hoard = []


def init():
    pass


def run(raw_data):
    for _ in range(json.loads(raw_data).get("grow_mib", 0)):
        hoard.append(b"x" * (1 << 20))
    return {"held_mib": len(hoard)}
"""


def test_a_replica_over_memory_gb_limit_is_oom_killed_and_the_service_says_so(tmp_path):
    with emulator_with_profile(tmp_path / "profiles", backoff_base=0.5):
        ws = Workspace.create(tmp_path / "ws", container_registry="profile:emulator")
        app = tmp_path / "app"
        app.mkdir()
        (app / "score.py").write_text(LEAKY)
        (tmp_path / "model.txt").write_text("weights")
        model = Model.register(ws, str(tmp_path / "model.txt"), "m")
        target = ComputeTarget.create(ws, "aks-oom", AksCompute.provisioning_configuration(
            cluster_purpose="DevTest", agent_count=1))
        target.wait_for_completion()
        service = Model.deploy(ws, "leaky", [model], InferenceConfig(entry_script="score.py", source_directory=str(app)),
                               AksWebservice.deploy_configuration(num_replicas=1, memory_gb_limit=0.3,
                                                                  cpu_cores_limit=0.5, auth_enabled=False), target)
        service.wait_for_deployment()
        # the emulator's node cannot enforce the CPU limit, and the service's status says so
        service.update_deployment_state()
        assert any("CPU limit (0.5 cores) is not enforced" in w for w in service.record.details["warnings"])
        assert service.run('{"grow_mib": 5}') == {"held_mib": 5}
        try:
            requests.post(service.scoring_uri, data='{"grow_mib": 600}', timeout=60)
        except requests.exceptions.ConnectionError:
            pass
        deadline = time.monotonic() + 60
        while "OOMKilled" not in (service.error or "") and time.monotonic() < deadline:
            service.update_deployment_state()
            time.sleep(0.2)
        assert "OOMKilled" in (service.error or ""), (service.state, service.error)
        assert service.state in ("Unhealthy", "Failed")
        assert "OOMKilled" in service.get_logs()
        service.delete()
