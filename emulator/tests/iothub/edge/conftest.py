"""An IoT hub with a registry of module images, and a clock the tests advance."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from aml_core.oci.image import EnvironmentSpec, ProgramSpec, build_program_image
from aml_core.oci.registry import RegistryClient
from aml_emulator.iothub import IotHubService
from aml_emulator.registry import RegistryService

MODULES = Path(__file__).parent / "modules"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout} s (last: {last!r})")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def module_image():
    return build_program_image(ProgramSpec(
        title="edge test module", packages=[MODULES / "edge_test_module"],
        environment=EnvironmentSpec(name="edge-test-module", pip_requirements=("azure-iot-device>=2.12",)),
        entrypoint=("python", "-m", "edge_test_module"), port=5001))


@pytest.fixture
def registry(tmp_path, module_image) -> Iterator[RegistryService]:
    service = RegistryService(tmp_path / "registry").start()
    client = RegistryClient(service.login_server, username=service.credentials.username,
                            password=service.credentials.passwords["password"])
    client.push_image("modules/edge-test", module_image, tags=["1"])
    yield service
    service.stop()


@pytest.fixture
def iothub_service(tmp_path, ca, monkeypatch, clock) -> Iterator[IotHubService]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.cert_path))
    service = IotHubService(tmp_path / "iothub", ca=ca, clock=clock, backoff_base=10.0).start()
    yield service
    service.stop()
