"""The IoT Edge provider end to end against the emulator: Model.deploy builds the scoring
module, applies the manifest with azure-iot-hub, and the edge device runs it between the
simulated sensor (an image our packaging builds) and $upstream."""

from __future__ import annotations

import json
import time

import pytest

from aml_core.errors import InvalidConfig, ProvisioningFailed, WebserviceException
from aml_core.model import Model
from aml_core.webservice import Webservice
from aml_provider_iotedge import IotBaseModuleSettings, IotModuleSettings, IotWebservice, publish_sensor_image

from .conftest import DEVICE, inference_config

ROUTES = {
    "sensorToModel": 'FROM /messages/modules/sensor/outputs/temperatureOutput '
                     'INTO BrokeredEndpoint("/modules/model/inputs/amlInput")',
    "modelToUpstream": "FROM /messages/modules/model/outputs/amlOutput INTO $upstream",
}


def wait_for(condition, timeout=90.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s (last: {last!r})")


def predictions(hub, module="model"):
    return [json.loads(e["body"]) for e in hub.events() if e["moduleId"] == module]


def config(workspace, count=5, interval=0.05, **kwargs):
    sensor = publish_sensor_image(workspace)
    return IotWebservice.deploy_configuration(
        device_id=DEVICE, routes=ROUTES, aml_module=IotBaseModuleSettings(name="model"),
        external_modules=[IotModuleSettings(name="sensor", image_location=sensor,
                                            env={"SENSOR_COUNT": str(count), "SENSOR_INTERVAL_SECONDS": str(interval)})],
        **kwargs)


def test_deploy_scores_sensor_readings_into_upstream_in_order(workspace, model, hub, tmp_path):
    service = Model.deploy(workspace, "anomaly", [model], inference_config(tmp_path), config(workspace))
    service.wait_for_deployment()
    assert isinstance(service, IotWebservice)
    assert service.state == "Healthy"
    assert service.scoring_uri is None
    got = wait_for(lambda: len(predictions(hub)) >= 5 and predictions(hub), what="5 predictions upstream")
    assert [p["n"] for p in got] == [0, 1, 2, 3, 4]
    assert all(p["version"] == 1 and p["anomaly"] is False for p in got)
    assert got[3]["expected"] == pytest.approx(23.0, abs=0.01)
    # the handle found again from the workspace reads its state from the agent's reported properties
    again = Webservice(workspace, "anomaly")
    assert again.update_deployment_state() == "Healthy"
    assert "anomaly model loaded" in again.get_logs()
    assert "sensor sent 5 readings" in again.get_logs(module="sensor")


def test_run_raises_and_send_test_message_scores_in_the_module(workspace, model, hub, tmp_path):
    service = Model.deploy(workspace, "anomaly", [model], inference_config(tmp_path), config(workspace, count=1))
    service.wait_for_deployment()
    with pytest.raises(WebserviceException, match="send_test_message"):
        service.run({"n": 1})
    result = service.send_test_message({"n": 99, "machine": {"temperature": 40.0, "pressure": 1.0}})
    assert result == {"n": 99, "expected": pytest.approx(20.0, abs=0.01), "anomaly": True, "version": 1}
    wait_for(lambda: any(p["n"] == 99 for p in predictions(hub)), what="the test result also routed upstream")


def gaps(got):
    """Where the readings' numbers break 0..N-1 order, for an assertion message."""
    numbers = [p["n"] for p in got]
    return [(i, a, b) for i, (a, b) in enumerate(zip(numbers, numbers[1:])) if b not in (a, a + 1)]


def contiguous(got):
    """The readings' numbers form 0..N-1 in order: nothing lost, nothing reordered (a
    redelivered duplicate after a restart is allowed: delivery is at least once)."""
    numbers = [p["n"] for p in got]
    deduplicated = [n for i, n in enumerate(numbers) if i == 0 or n != numbers[i - 1]]
    return deduplicated == list(range(len(deduplicated)))


def test_update_replaces_the_module_and_keeps_the_messages(workspace, model, hub, tmp_path):
    service = Model.deploy(workspace, "anomaly", [model], inference_config(tmp_path),
                           config(workspace, count=0, interval=0.05))
    service.wait_for_deployment()
    wait_for(lambda: len(predictions(hub)) >= 3, what="first predictions")
    service.update(inference_config=inference_config(tmp_path, "score_anomaly_v2.py", "app2"))
    assert service.state == "Healthy"
    got = wait_for(lambda: (ps := predictions(hub)) and ps[-1]["version"] == 2 and len(ps) > 10 and ps,
                   what="predictions of the new version")
    assert contiguous(got), str([(p["n"], p["version"]) for p in got]) + service.get_logs()
    versions = [p["version"] for p in got]
    assert versions == sorted(versions)  # v1 until the switch, v2 after


def test_delete_removes_the_modules_from_the_device(workspace, model, hub, tmp_path):
    from azure.iot.hub import IoTHubRegistryManager

    service = Model.deploy(workspace, "anomaly", [model], inference_config(tmp_path), config(workspace, count=1))
    service.wait_for_deployment()
    service.delete()
    registry = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    wait_for(lambda: not (registry.get_module_twin(DEVICE, "$edgeAgent").properties.reported.get("modules")),
             what="modules gone from the agent's report")


def test_init_failure_fails_the_deployment_with_the_module_status(workspace, model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "score.py").write_text("def init():\n    raise RuntimeError('no model here')\n\ndef run(d):\n    return d\n")
    from aml_core.inference import InferenceConfig

    service = Model.deploy(workspace, "broken", [model], InferenceConfig(entry_script="score.py", source_directory=str(broken)),
                           IotWebservice.deploy_configuration(device_id=DEVICE, routes={"up": "FROM /* INTO $upstream"},
                                                              aml_module=IotBaseModuleSettings(name="model"),
                                                              startup_timeout=60))
    with pytest.raises(ProvisioningFailed, match="exited with code 3"):
        service.wait_for_deployment()
    assert "no model here" in service.get_logs()


def test_route_to_an_unknown_module_is_refused_before_anything_is_applied(workspace):
    with pytest.raises(InvalidConfig, match="'nosuch'"):
        from aml_provider_iotedge import manifest

        manifest.build(IotWebservice.deploy_configuration(
            device_id=DEVICE, routes={"bad": 'FROM /* INTO BrokeredEndpoint("/modules/nosuch/inputs/x")'},
            aml_module=IotBaseModuleSettings(name="model")), "img", [], "1")


def test_configuration_needs_routes_and_a_module():
    with pytest.raises(InvalidConfig, match="routes is required"):
        IotWebservice.deploy_configuration(device_id=DEVICE, routes={}, aml_module=IotBaseModuleSettings(name="m"))
    with pytest.raises(InvalidConfig, match="aml_module is required"):
        IotWebservice.deploy_configuration(device_id=DEVICE, routes={"r": "FROM /* INTO $upstream"})
