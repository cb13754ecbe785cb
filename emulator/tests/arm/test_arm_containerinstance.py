"""``Microsoft.ContainerInstance/containerGroups`` through the real azure-mgmt-containerinstance
client: groups whose containers really run (pulled from the emulator's registry with the
group's credentials), logs, stop/start/restart, delete, errors in ACI's codes and wording, and
groups that come back after an emulator restart."""

from __future__ import annotations

import io
import tarfile
import time

import pytest
import requests
from arm_testing import SCOPES, FixedToken

from aml_emulator import Emulator
from aml_emulator.arm import OperationScript

pytest.importorskip("azure.mgmt.containerinstance")

GROUPS = "Microsoft.ContainerInstance/containerGroups"


def _image():
    from aml_core.oci.image import EnvironmentSpec, Image
    from aml_core.oci.layers import Blob, gzip_bytes
    from aml_core.oci.media import OCI_LAYER_GZIP

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("app/README")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    layer = Blob.from_bytes(gzip_bytes(raw.getvalue()), OCI_LAYER_GZIP)
    script = 'echo "hello $GREETING"; exec python3 -m http.server "$AML_PORT" --bind "$AML_HOST"'
    return Image.assemble({"config": {"Entrypoint": ["/bin/sh", "-c", script], "Labels": {
        "org.aml.environment": EnvironmentSpec(name="web").to_label()}}}, [layer])


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    from aml_core.oci.registry import RegistryClient

    with Emulator(tmp_path_factory.mktemp("aci"), services=["registry", "arm"], arm_retry_after=0.05) as emulator:
        creds = emulator.registry.credentials
        RegistryClient(emulator.registry.login_server, username=creds.username,
                       password=creds.passwords["password"]).push_image("web", _image(), tags=("1",))
        yield emulator


@pytest.fixture
def client(emu):
    from azure.mgmt.containerinstance import ContainerInstanceManagementClient

    yield ContainerInstanceManagementClient(FixedToken(emu.arm_token), emu.subscription_id, base_url=emu.arm.url,
                                            credential_scopes=SCOPES, connection_verify=str(emu.ca_bundle),
                                            retry_total=0)
    emu.arm.clear_operation_scripts()


def _body(emu, *, password=None, cpu=0.5, memory=1.0, label=None, secure="s3cret"):
    creds = emu.registry.credentials
    ip = {"type": "Public", "ports": [{"protocol": "TCP", "port": 5001}]}
    if label:
        ip["dnsNameLabel"] = label
    return {
        "location": "westus", "tags": {"owner": "tests"},
        "properties": {
            "osType": "Linux", "restartPolicy": "Always", "ipAddress": ip,
            "imageRegistryCredentials": [{"server": emu.registry.login_server, "username": creds.username,
                                          "password": password or creds.passwords["password"]}],
            "containers": [{"name": "web", "properties": {
                "image": f"{emu.registry.login_server}/web:1",
                "ports": [{"port": 5001}],
                "environmentVariables": [{"name": "GREETING", "value": "world"},
                                         {"name": "TOKEN", "secureValue": secure}],
                "resources": {"requests": {"cpu": cpu, "memoryInGB": memory}}}}],
        },
    }


def _url(group) -> str:
    return f"http://{group.ip_address.ip}:{group.ip_address.ports[0].port}/"


def _wait_serving(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"nothing served {url} within {timeout} s")


def _wait_closed(url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
        except requests.ConnectionError:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} still answers")


def _create(client, emu, name, **kwargs):
    return client.container_groups.begin_create_or_update(emu.resource_group, name, _body(emu, **kwargs)).result(timeout=60)


def test_a_group_runs_its_image_pulled_with_its_credentials(client, emu):
    group = _create(client, emu, "web1")
    try:
        assert group.provisioning_state == "Succeeded"
        assert group.instance_view.state == "Running"
        container = group.containers[0]
        assert container.instance_view.current_state.state == "Running"
        assert [e.name for e in container.instance_view.events][:3] == ["Pulling", "Pulled", "Started"]
        _wait_serving(_url(group))
        logs = client.containers.list_logs(emu.resource_group, "web1", "web", tail=10).content
        assert "hello world" in logs
        # secrets never come back: not the secure value, not the registry password
        assert all(v.secure_value is None for v in container.environment_variables)
        assert group.image_registry_credentials[0].password is None
        names = [g.name for g in client.container_groups.list_by_resource_group(emu.resource_group)]
        assert "web1" in names and "web1" in [g.name for g in client.container_groups.list()]
    finally:
        client.container_groups.begin_delete(emu.resource_group, "web1").result(timeout=30)


def test_a_wrong_registry_password_fails_the_deployment_with_the_pull_error(client, emu):
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as info:
        _create(client, emu, "badpull", password="wrong-password")
    assert info.value.error.code == "InaccessibleImage"
    assert "not accessible" in info.value.error.message
    group = client.container_groups.get(emu.resource_group, "badpull")
    assert group.provisioning_state == "Failed"
    events = group.containers[0].instance_view.events
    assert any(e.type == "Warning" and "Failed to pull image" in e.message for e in events)
    assert "wrong-password" not in str(group.as_dict())
    logs = client.containers.list_logs(emu.resource_group, "badpull", "web").content
    assert "Failed to pull image" in logs
    client.container_groups.begin_delete(emu.resource_group, "badpull").result(timeout=30)


def test_more_cpu_than_a_group_may_have_is_a_quota_error(client, emu):
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    with pytest.raises(HttpResponseError) as info:
        client.container_groups.begin_create_or_update(emu.resource_group, "big", _body(emu, cpu=5))
    assert info.value.status_code == 400
    assert info.value.error.code == "ResourceQuotaExceeded"
    assert "exceeds the limit of 4 CPU and 16 GB" in info.value.error.message
    with pytest.raises(ResourceNotFoundError):  # nothing was stored
        client.container_groups.get(emu.resource_group, "big")


def test_a_dns_label_is_unique_per_location(client, emu):
    from azure.core.exceptions import ResourceExistsError

    first = _create(client, emu, "dns1", label="taken-label")
    try:
        assert first.ip_address.fqdn == "taken-label.westus.azurecontainer.io"
        with pytest.raises(ResourceExistsError) as info:
            client.container_groups.begin_create_or_update(emu.resource_group, "dns2", _body(emu, label="taken-label"))
        assert info.value.error.code == "DnsNameLabelNotAvailable"
        assert "The DNS name label 'taken-label' in container group 'dns2' not available" in info.value.error.message
    finally:
        client.container_groups.begin_delete(emu.resource_group, "dns1").result(timeout=30)


def test_an_invalid_dns_label_names_the_rule(client, emu):
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as info:
        client.container_groups.begin_create_or_update(emu.resource_group, "dns3", _body(emu, label="Bad_Label"))
    assert info.value.error.code == "InvalidDnsNameLabel"
    assert "between 5 and 63 characters" in info.value.error.message


def test_cpu_cannot_change_in_place(client, emu):
    from azure.core.exceptions import HttpResponseError

    _create(client, emu, "fixed")
    try:
        with pytest.raises(HttpResponseError) as info:
            client.container_groups.begin_create_or_update(emu.resource_group, "fixed", _body(emu, cpu=1.0))
        assert info.value.error.code == "InvalidContainerGroupUpdate"
    finally:
        client.container_groups.begin_delete(emu.resource_group, "fixed").result(timeout=30)


def test_stop_start_restart_and_delete(client, emu):
    from azure.core.exceptions import ResourceNotFoundError

    group = _create(client, emu, "cycle")
    url = _url(group)
    _wait_serving(url)
    client.container_groups.stop(emu.resource_group, "cycle")
    assert client.container_groups.get(emu.resource_group, "cycle").instance_view.state == "Stopped"
    _wait_closed(url)
    client.container_groups.begin_start(emu.resource_group, "cycle").result(timeout=30)
    _wait_serving(url)
    client.container_groups.begin_restart(emu.resource_group, "cycle").result(timeout=30)
    assert client.container_groups.get(emu.resource_group, "cycle").instance_view.state == "Running"
    _wait_serving(url)
    client.container_groups.begin_delete(emu.resource_group, "cycle").result(timeout=30)
    with pytest.raises(ResourceNotFoundError):
        client.container_groups.get(emu.resource_group, "cycle")
    _wait_closed(url)


def test_a_scripted_slow_then_failing_create(client, emu):
    from azure.core.exceptions import HttpResponseError

    emu.script_arm_operations(GROUPS, OperationScript.after_polls(2))
    poller = client.container_groups.begin_create_or_update(emu.resource_group, "slow", _body(emu))
    assert poller.result(timeout=30).provisioning_state == "Succeeded"
    client.container_groups.begin_delete(emu.resource_group, "slow").result(timeout=30)
    emu.script_arm_operations(GROUPS, OperationScript.failing("InternalServerError", "The node was lost."),
                              operation="create", name="lost")
    with pytest.raises(HttpResponseError) as info:
        _create(client, emu, "lost")
    assert info.value.error.code == "InternalServerError"
    group = client.container_groups.get(emu.resource_group, "lost")
    assert group.provisioning_state == "Failed"
    assert group.instance_view.state == "Failed"
    client.container_groups.begin_delete(emu.resource_group, "lost").result(timeout=30)


def test_logs_of_an_unknown_container_are_not_found(client, emu):
    from azure.core.exceptions import ResourceNotFoundError

    _create(client, emu, "logs1")
    try:
        with pytest.raises(ResourceNotFoundError) as info:
            client.containers.list_logs(emu.resource_group, "logs1", "nope")
        assert info.value.error.code == "ContainerNotFound"
    finally:
        client.container_groups.begin_delete(emu.resource_group, "logs1").result(timeout=30)


def test_a_group_runs_again_after_an_emulator_restart(tmp_path):
    from azure.mgmt.containerinstance import ContainerInstanceManagementClient

    from aml_core.oci.registry import RegistryClient

    def connect(emulator):
        return ContainerInstanceManagementClient(FixedToken(emulator.arm_token), emulator.subscription_id,
                                                 base_url=emulator.arm.url, credential_scopes=SCOPES,
                                                 connection_verify=str(emulator.ca_bundle))

    with Emulator(tmp_path / "state", services=["registry", "arm"], arm_retry_after=0.05) as emulator:
        creds = emulator.registry.credentials
        RegistryClient(emulator.registry.login_server, username=creds.username,
                       password=creds.passwords["password"]).push_image("web", _image(), tags=("1",))
        connect(emulator).container_groups.begin_create_or_update(
            emulator.resource_group, "kept", _body(emulator)).result(timeout=60)
    with Emulator(tmp_path / "state", services=["registry", "arm"], arm_retry_after=0.05) as emulator:
        group = connect(emulator).container_groups.get(emulator.resource_group, "kept")
        assert group.provisioning_state == "Succeeded"
        _wait_serving(_url(group))
        assert "hello world" in connect(emulator).containers.list_logs(emulator.resource_group, "kept", "web").content


def test_the_group_as_kept_in_memory_shows_no_secret_in_its_repr(client, emu):
    _create(client, emu, "secretive", secure="very-secret-value")
    try:
        [(_sub, _group, resource)] = [found for found in emu.arm.backend.resources_of_type("containerGroups")
                                      if found[2].name == "secretive"]
        shown = repr(resource)
        assert "very-secret-value" not in shown
        assert emu.registry.credentials.passwords["password"] not in shown
    finally:
        client.container_groups.begin_delete(emu.resource_group, "secretive").result(timeout=30)
