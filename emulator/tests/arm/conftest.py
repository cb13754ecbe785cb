"""Fixtures: a real registry service behind a real ARM service, and the real Azure SDK client."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from arm_testing import REGISTRY, RESOURCE_GROUP, SCOPES, SUBSCRIPTION, FixedToken

from aml_emulator.arm import ArmService
from aml_emulator.registry import RegistryService


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryService]:
    service = RegistryService(state_dir=tmp_path / "registry")
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def arm(tmp_path: Path, registry: RegistryService) -> Iterator[ArmService]:
    service = ArmService(tmp_path / "arm")
    service.add_registry(REGISTRY, registry, subscription_id=SUBSCRIPTION, resource_group=RESOURCE_GROUP)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def make_client(arm: ArmService) -> Callable[..., object]:
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    def make(token: str | None = None, *, base_url: str | None = None, **kwargs: object) -> ContainerRegistryManagementClient:
        return ContainerRegistryManagementClient(
            FixedToken(token if token is not None else arm.token),
            SUBSCRIPTION,
            base_url=base_url or arm.url,
            credential_scopes=SCOPES,
            connection_verify=str(arm.ca_bundle),
            retry_total=0,
            **kwargs,
        )

    return make


@pytest.fixture
def client(make_client: Callable[..., object]) -> object:
    return make_client()
