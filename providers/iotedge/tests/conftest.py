"""An emulator (registry, ARM, IoT hub) with its cloud profile naming an IoT hub created through
ARM with azure-mgmt-iothub, an emulated edge device on it, and a workspace pushing to the
emulator's registry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

ASSETS = Path(__file__).parent / "assets"
HUB = "provhub"
DEVICE = "edge-1"


@pytest.fixture
def emulator(tmp_path, monkeypatch) -> Iterator[Any]:
    from azure.core.credentials import AccessToken
    from azure.mgmt.iothub import IotHubClient
    from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo

    from aml_emulator import Emulator

    monkeypatch.setenv("AML_PROFILE_DIR", str(tmp_path / "profiles"))
    monkeypatch.delenv("AML_IOTHUB_CONNECTION_STRING", raising=False)
    with Emulator(tmp_path / "emulator", services=["registry", "arm", "iothub"], arm_retry_after=0.1) as emu:
        profile = emu.profile()
        profile = type(profile).from_dict({**profile.to_dict(), "extra": {**profile.extra, "iothub_name": HUB}})
        profile.save()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emu.ca_bundle))  # for the tests' own hub clients

        class Token:
            def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
                return AccessToken(emu.arm_token, 4102444800)

        client = IotHubClient(Token(), emu.subscription_id, base_url=emu.arm.url,
                              credential_scopes=["https://management.azure.com/.default"],
                              connection_verify=str(emu.ca_bundle))
        client.iot_hub_resource.begin_create_or_update(
            emu.resource_group, HUB, IotHubDescription(location="westus", sku=IotHubSkuInfo(name="S1"))).result()
        emu.iothub.hub(HUB).add_edge_device(DEVICE)
        yield emu


@pytest.fixture
def workspace(tmp_path, emulator):
    from aml_core.workspace import Workspace

    return Workspace.create(tmp_path / "ws", container_registry="profile:emulator")


@pytest.fixture
def model(workspace, tmp_path):
    import joblib
    from sklearn.linear_model import Ridge

    from aml_core.model import Model

    pressures = [[1.0 + i / 10] for i in range(20)]
    temperatures = [20.0 + i for i in range(20)]
    path = tmp_path / "temperature_model.pkl"
    joblib.dump(Ridge(alpha=1e-6).fit(pressures, temperatures), path)
    return Model.register(workspace, path, "temperature")


def inference_config(tmp_path: Path, script: str = "score_anomaly.py", folder: str = "app") -> Any:
    import shutil

    from aml_core.inference import InferenceConfig

    app = tmp_path / folder
    app.mkdir(exist_ok=True)
    shutil.copyfile(ASSETS / script, app / "score.py")
    return InferenceConfig(entry_script="score.py", source_directory=str(app))


@pytest.fixture
def hub(emulator):
    return emulator.iothub.hub(HUB)


