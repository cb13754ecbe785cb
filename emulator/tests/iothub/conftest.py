"""One IoT hub service per test, on its own loopback address, trusted through the emulator's CA."""

from __future__ import annotations

from typing import Iterator

import pytest

from aml_emulator.arm.tls import CertificateAuthority
from aml_emulator.iothub import IotHubService


@pytest.fixture
def ca(tmp_path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca")


@pytest.fixture
def iothub_service(tmp_path, ca, monkeypatch) -> Iterator[IotHubService]:
    # azure-iot-hub's msrest session uses requests, which reads the trusted CAs from here
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.cert_path))
    service = IotHubService(tmp_path / "iothub", ca=ca).start()
    yield service
    service.stop()


@pytest.fixture
def hub(iothub_service):
    return iothub_service.create_hub("testhub")
