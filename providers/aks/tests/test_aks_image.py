"""Webservice.deploy_from_image on AKS: the core's generic path runs a packaged image as it is,
and update(image=) swaps it."""

from __future__ import annotations

from aml_core.compute import ComputeTarget
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_core.webservice import Webservice
from aml_provider_aks import AksCompute, AksWebservice

SCORE = """
def init():
    pass


def run(raw_data):
    return {{"code": "{label}"}}
"""


def _app(tmp_path, label: str) -> InferenceConfig:
    folder = tmp_path / label
    folder.mkdir()
    (folder / "score.py").write_text(SCORE.format(label=label))
    return InferenceConfig(entry_script="score.py", source_directory=str(folder))


def test_deploy_from_image_then_update_with_a_new_image(emulator, ws, tmp_path):
    (tmp_path / "model.txt").write_text("no weights needed")
    model = Model.register(ws, str(tmp_path / "model.txt"), "imaged")
    target = ComputeTarget.create(ws, "aks-image", AksCompute.provisioning_configuration(cluster_purpose="DevTest",
                                                                                         agent_count=1))
    target.wait_for_completion()
    first = Model.package(ws, [model], _app(tmp_path, "one"), image_name="imaged")
    service = Webservice.deploy_from_image(ws, "imaged", first, AksWebservice.deploy_configuration(num_replicas=1),
                                           deployment_target=target)
    service.wait_for_deployment()
    assert service.state == "Healthy"
    assert service.run("{}") == {"code": "one"}
    assert service.models == [model.id]
    second = Model.package(ws, [model], _app(tmp_path, "two"), image_name="imaged")
    service.update(image=second)
    assert service.run("{}") == {"code": "two"}
    service.delete()
