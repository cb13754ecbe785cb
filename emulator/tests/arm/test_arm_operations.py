"""Long-running operations and their test scripts (:mod:`aml_emulator.arm.operations`),
driven through the real azure-mgmt-containerservice poller and plain ``requests``, plus the
persistence of ARM resources across a restart of the service on the same state directory."""

from __future__ import annotations

import stat

import pytest
import requests
import yaml
from arm_testing import RESOURCE_GROUP, SCOPES, SUBSCRIPTION, FixedToken

from aml_emulator.arm import ArmService, OperationScript

pytest.importorskip("azure.mgmt.containerservice")

CLUSTERS = "Microsoft.ContainerService/managedClusters"
BODY = {"location": "westus", "properties": {"dnsPrefix": "c", "agentPoolProfiles": [
    {"name": "agentpool", "count": 1, "vmSize": "Standard_D3_v2", "mode": "System"}]}}


class HandClock:
    """A seconds clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _start(state_dir, clock=None, retry_after=0.05) -> ArmService:
    service = ArmService(state_dir, clock=clock, retry_after=retry_after)
    service.add_kubernetes(lambda: yaml.safe_dump({"apiVersion": "v1", "kind": "Config"}))
    service.backend.ensure_group(SUBSCRIPTION, RESOURCE_GROUP)
    return service.start()


@pytest.fixture
def clock():
    return HandClock()


@pytest.fixture
def service(tmp_path, clock):
    arm = _start(tmp_path / "arm", clock)
    try:
        yield arm
    finally:
        arm.stop()


def _client(arm: ArmService):
    from azure.mgmt.containerservice import ContainerServiceClient

    return ContainerServiceClient(FixedToken(arm.token), SUBSCRIPTION, base_url=arm.url, credential_scopes=SCOPES,
                                  connection_verify=str(arm.ca_bundle), retry_total=0)


def _put(arm: ArmService, name: str) -> requests.Response:
    url = (f"{arm.url}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
           f"{CLUSTERS}/{name}")
    return requests.put(url, params={"api-version": "2024-05-01"}, json=BODY, headers=_auth(arm),
                        verify=str(arm.ca_bundle), timeout=10)


def _auth(arm: ArmService) -> dict[str, str]:
    return {"Authorization": f"Bearer {arm.token}"}


def _status(arm: ArmService, url: str) -> str:
    return requests.get(url, headers=_auth(arm), verify=str(arm.ca_bundle), timeout=10).json()["status"]


def test_the_first_answer_carries_both_polling_urls_and_a_retry_after(service):
    response = _put(service, "c1")
    assert response.status_code == 201
    assert "/providers/Microsoft.ContainerService/locations/westus/operations/" in response.headers["Azure-AsyncOperation"]
    assert "/operationResults/" in response.headers["Location"]
    assert response.headers["retry-after-ms"] == "50"  # a fraction of a second goes out in ms


def test_a_whole_second_retry_after_goes_out_as_retry_after(tmp_path):
    arm = _start(tmp_path / "arm", retry_after=1)
    try:
        response = _put(arm, "c1")
        assert response.headers["Retry-After"] == "1"
        assert "retry-after-ms" not in response.headers
    finally:
        arm.stop()


def test_after_polls_answers_in_progress_that_many_times(service):
    service.script_operations(CLUSTERS, OperationScript.after_polls(2))
    status_url = _put(service, "c2").headers["Azure-AsyncOperation"]
    assert [_status(service, status_url) for _ in range(3)] == ["InProgress", "InProgress", "Succeeded"]
    assert _client(service).managed_clusters.get(RESOURCE_GROUP, "c2").provisioning_state == "Succeeded"


def test_after_seconds_follows_the_injected_clock_not_the_wall_clock(service, clock):
    service.script_operations(CLUSTERS, OperationScript.after_seconds(600))
    status_url = _put(service, "c3").headers["Azure-AsyncOperation"]
    client = _client(service)
    assert _status(service, status_url) == "InProgress"
    assert client.managed_clusters.get(RESOURCE_GROUP, "c3").provisioning_state == "Creating"
    clock.now += 599
    assert _status(service, status_url) == "InProgress"
    clock.now += 1
    # reading the resource settles it by the clock too, before any further poll
    assert client.managed_clusters.get(RESOURCE_GROUP, "c3").provisioning_state == "Succeeded"
    assert _status(service, status_url) == "Succeeded"


def test_the_sdk_poller_waits_through_a_scripted_slow_create(service):
    service.script_operations(CLUSTERS, OperationScript.after_polls(3))
    poller = _client(service).managed_clusters.begin_create_or_update(RESOURCE_GROUP, "c4", BODY)
    assert poller.result(timeout=30).provisioning_state == "Succeeded"


def test_a_scripted_failure_reaches_the_sdk_with_its_code_and_message(service):
    from azure.core.exceptions import HttpResponseError

    service.script_operations(CLUSTERS, OperationScript.failing("QuotaExceeded", "Cores quota reached."),
                              operation="create", name="c5")
    client = _client(service)
    with pytest.raises(HttpResponseError) as info:
        client.managed_clusters.begin_create_or_update(RESOURCE_GROUP, "c5", BODY).result(timeout=30)
    assert info.value.error.code == "QuotaExceeded"
    assert "Cores quota reached." in str(info.value)
    assert client.managed_clusters.get(RESOURCE_GROUP, "c5").provisioning_state == "Failed"
    # the script named c5 only: another cluster still succeeds
    assert client.managed_clusters.begin_create_or_update(RESOURCE_GROUP, "c6", BODY).result(
        timeout=30).provisioning_state == "Succeeded"


def test_the_location_url_answers_202_then_the_resource(service):
    service.script_operations(CLUSTERS, OperationScript.after_polls(1))
    location = _put(service, "c7").headers["Location"]
    first = requests.get(location, headers=_auth(service), verify=str(service.ca_bundle), timeout=10)
    assert first.status_code == 202
    assert first.headers["Location"].split("?")[0] == location.split("?")[0]
    second = requests.get(location, headers=_auth(service), verify=str(service.ca_bundle), timeout=10)
    assert second.status_code == 200
    assert second.json()["properties"]["provisioningState"] == "Succeeded"


def test_a_failed_operation_answers_its_error_on_the_location_url(service):
    service.script_operations(CLUSTERS, OperationScript.failing("InvalidParameter", "Bad pool.", status=400))
    location = _put(service, "c8").headers["Location"]
    answer = requests.get(location, headers=_auth(service), verify=str(service.ca_bundle), timeout=10)
    assert answer.status_code == 400
    assert answer.json() == {"error": {"code": "InvalidParameter", "message": "Bad pool."}}


def test_an_unknown_operation_is_not_found(service):
    url = f"{service.url}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.ContainerService/locations/westus/operations/nope"
    answer = requests.get(url, params={"api-version": "2024-05-01"}, headers=_auth(service),
                          verify=str(service.ca_bundle), timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NotFound"


def test_clearing_scripts_lets_operations_finish_at_once_again(service):
    service.script_operations(CLUSTERS, OperationScript.after_polls(50))
    service.clear_operation_scripts()
    status_url = _put(service, "c9").headers["Azure-AsyncOperation"]
    assert _status(service, status_url) == "Succeeded"


def test_a_script_needs_a_namespaced_type_and_a_failure_needs_a_code(service):
    with pytest.raises(ValueError, match="Namespace/type"):
        service.script_operations("managedClusters", OperationScript.immediate())
    with pytest.raises(ValueError, match="error code"):
        OperationScript.failing("", "no code")
    with pytest.raises(ValueError):
        OperationScript.after_polls(-1)


def test_resources_survive_a_restart_in_a_private_file(tmp_path):
    state = tmp_path / "arm"
    first = _start(state)
    try:
        _client(first).managed_clusters.begin_create_or_update(RESOURCE_GROUP, "kept", BODY).result(timeout=30)
    finally:
        first.stop()
    assert stat.S_IMODE((state / "resources.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    second = _start(state)
    try:
        cluster = _client(second).managed_clusters.get(RESOURCE_GROUP, "kept")
        assert cluster.provisioning_state == "Succeeded"
        assert cluster.agent_pool_profiles[0].count == 1
    finally:
        second.stop()


def test_a_delete_is_remembered_across_a_restart(tmp_path):
    from azure.core.exceptions import ResourceNotFoundError

    state = tmp_path / "arm"
    first = _start(state)
    try:
        client = _client(first)
        client.managed_clusters.begin_create_or_update(RESOURCE_GROUP, "gone", BODY).result(timeout=30)
        client.managed_clusters.begin_delete(RESOURCE_GROUP, "gone").result(timeout=30)
    finally:
        first.stop()
    second = _start(state)
    try:
        with pytest.raises(ResourceNotFoundError):
            _client(second).managed_clusters.get(RESOURCE_GROUP, "gone")
    finally:
        second.stop()


def test_reset_forgets_resources_and_scripts(service):
    from azure.core.exceptions import ResourceNotFoundError

    service.script_operations(CLUSTERS, OperationScript.after_polls(50))
    _put(service, "c10")
    service.reset()
    with pytest.raises(ResourceNotFoundError):
        _client(service).managed_clusters.get(RESOURCE_GROUP, "c10")
    status_url = _put(service, "c11").headers["Azure-AsyncOperation"]
    assert _status(service, status_url) == "Succeeded"


def test_the_emulator_scripts_operations_and_keeps_resources_across_restarts(tmp_path):
    from azure.mgmt.containerservice import ContainerServiceClient

    from aml_emulator import Emulator

    clock = HandClock()
    with Emulator(tmp_path / "state", services=["registry", "arm"], clock=clock, arm_retry_after=0.05) as emu:
        emu.arm.add_kubernetes(lambda: "apiVersion: v1\nkind: Config\n")
        emu.script_arm_operations(CLUSTERS, OperationScript.after_seconds(30))
        client = ContainerServiceClient(FixedToken(emu.arm_token), emu.subscription_id, base_url=emu.arm.url,
                                        credential_scopes=SCOPES, connection_verify=str(emu.ca_bundle))
        poller = client.managed_clusters.begin_create_or_update(emu.resource_group, "slow", BODY)
        assert client.managed_clusters.get(emu.resource_group, "slow").provisioning_state == "Creating"
        clock.now += 30
        assert poller.result(timeout=30).provisioning_state == "Succeeded"
    with Emulator(tmp_path / "state", services=["registry", "arm"]) as emu:
        client = ContainerServiceClient(FixedToken(emu.arm_token), emu.subscription_id, base_url=emu.arm.url,
                                        credential_scopes=SCOPES, connection_verify=str(emu.ca_bundle))
        assert client.managed_clusters.get(emu.resource_group, "slow").provisioning_state == "Succeeded"
