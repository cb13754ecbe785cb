"""An emulated edge device driven as an IoT Edge developer would: a deployment applied with the
real azure-iot-hub SDK, modules (real images from the registry) connecting through the real
azure-iot-device SDK's ``create_from_edge_environment()``, routed by the edge hub."""

from __future__ import annotations

import json

import pytest
from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, ConfigurationContent

from .conftest import wait_for

DEVICE = "edge-dev"


def manifest(registry, modules: dict, routes: dict, *, edge_hub: bool = True, system_edge_hub: bool = True) -> dict:
    address = registry.login_server
    agent = {
        "schemaVersion": "1.1",
        "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25", "registryCredentials": {
            "emu": {"username": registry.credentials.username, "password": registry.credentials.passwords["password"],
                    "address": address}}}},
        "systemModules": {"edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.4"}},
                          **({"edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                                          "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.4"}}}
                             if system_edge_hub else {})},
        "modules": {name: {"version": "1.0", "type": "docker", "status": "running",
                           "restartPolicy": spec.get("restartPolicy", "always"),
                           "startupOrder": spec.get("startupOrder", 10),
                           "env": {k: {"value": v} for k, v in spec.get("env", {}).items()},
                           "settings": {"image": spec.get("image", f"{address}/modules/edge-test:1"),
                                        "createOptions": json.dumps(spec.get("createOptions", {}))}}
                    for name, spec in modules.items()},
    }
    content = {"$edgeAgent": {"properties.desired": agent}}
    if edge_hub:
        content["$edgeHub"] = {"properties.desired": {"schemaVersion": "1.1", "routes": routes,
                                                      "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}
    return content


@pytest.fixture
def edge(hub):
    device = hub.add_edge_device(DEVICE)
    registry_manager = IoTHubRegistryManager.from_connection_string(hub.connection_string())
    configs = IoTHubConfigurationManager.from_connection_string(hub.connection_string())
    return device, registry_manager, configs


def deploy(configs, content):
    configs.apply_configuration_on_edge_device(DEVICE, ConfigurationContent(modules_content=content))


def agent_reported(registry_manager) -> dict:
    return registry_manager.get_module_twin(DEVICE, "$edgeAgent").properties.reported


def module_status(registry_manager, name):
    return ((agent_reported(registry_manager).get("modules") or {}).get(name) or {}).get("runtimeStatus")


def test_sensor_to_echo_to_upstream_in_order(hub, registry, edge):
    device, registry_manager, configs = edge
    deploy(configs, manifest(registry, {
        "sensor": {"env": {"MODE": "sensor", "COUNT": "5"}, "startupOrder": 2},
        "echo": {"env": {"MODE": "echo"}, "startupOrder": 1},
    }, {
        "toEcho": 'FROM /messages/modules/sensor/outputs/readings WHERE kind = "reading" '
                  'INTO BrokeredEndpoint("/modules/echo/inputs/input1")',
        "up": "FROM /messages/modules/echo/outputs/* INTO $upstream",
    }))
    events = wait_for(lambda: len(hub.events()) >= 5 and hub.events(), what="5 echoed readings upstream")
    assert [json.loads(e["body"]) for e in events] == [{"echo": {"n": n}} for n in range(5)]
    assert all(e["moduleId"] == "echo" and e["properties"] == {"kind": "reading"} for e in events)
    reported = agent_reported(registry_manager)
    assert reported["lastDesiredStatus"]["code"] == 200
    assert reported["modules"]["echo"]["runtimeStatus"] == "running"
    assert reported["modules"]["sensor"]["settings"]["image"].endswith("modules/edge-test:1")
    assert registry_manager.get_module_twin(DEVICE, "echo").properties.reported["mode"] == "echo"
    hub_reported = registry_manager.get_module_twin(DEVICE, "$edgeHub").properties.reported
    assert hub_reported["lastDesiredStatus"]["code"] == 200
    logs = registry_manager.invoke_device_module_method(DEVICE, "$edgeAgent", CloudToDeviceMethod(
        method_name="GetModuleLogs", payload={"schemaVersion": "1.0", "items": [{"id": "sensor", "filter": {"tail": 10}}]}))
    assert logs.status == 200
    assert "sent all readings" in logs.payload[0]["payload"]


def test_crashing_module_backs_off_on_the_clock_and_the_rest_keeps_running(hub, registry, edge, clock):
    device, registry_manager, configs = edge
    deploy(configs, manifest(registry, {
        "crasher": {"env": {"MODE": "crash"}, "restartPolicy": "on-failure"},
        "echo": {"env": {"MODE": "echo"}},
    }, {"up": "FROM /messages/modules/echo/outputs/* INTO $upstream"}))
    crashed = wait_for(lambda: (agent_reported(registry_manager).get("modules") or {}).get("crasher", {}).get("exitCode") == 3
                       and agent_reported(registry_manager)["modules"]["crasher"], what="crasher exit reported")
    assert crashed["runtimeStatus"] == "backoff"
    assert crashed["restartCount"] == 0
    assert "exited with code 3" in crashed["statusDescription"]
    clock.advance(9)  # the first cool-off is 10 s: not yet
    device.agent.tick()
    assert agent_reported(registry_manager)["modules"]["crasher"]["restartCount"] == 0
    clock.advance(1)
    wait_for(lambda: agent_reported(registry_manager)["modules"]["crasher"]["restartCount"] == 1, what="a restart")
    wait_for(lambda: module_status(registry_manager, "echo") == "running", what="echo running")


def test_never_policy_leaves_a_crashed_module_failed(hub, registry, edge):
    device, registry_manager, configs = edge
    deploy(configs, manifest(registry, {"once": {"env": {"MODE": "crash"}, "restartPolicy": "never"}},
                             {"up": "FROM /* INTO $upstream"}))
    wait_for(lambda: module_status(registry_manager, "once") == "failed", what="failed status")
    assert "crashing on purpose" in device.agent.module_logs("once")


def test_unpullable_image_is_reported_and_named(hub, registry, edge):
    device, registry_manager, configs = edge
    missing = f"{registry.login_server}/modules/does-not-exist:1"
    deploy(configs, manifest(registry, {"ghost": {"image": missing}, "echo": {"env": {"MODE": "echo"}}},
                             {"up": "FROM /* INTO $upstream"}))
    ghost = wait_for(lambda: module_status(registry_manager, "ghost") == "backoff"
                     and agent_reported(registry_manager)["modules"]["ghost"], what="ghost in backoff")
    assert missing in ghost["statusDescription"]
    wait_for(lambda: module_status(registry_manager, "echo") == "running", what="echo running")


def test_route_to_unknown_module_is_reported_and_other_routes_apply(hub, registry, edge):
    device, registry_manager, configs = edge
    deploy(configs, manifest(registry, {"sensor": {"env": {"MODE": "sensor", "COUNT": "2"}}}, {
        "bad": 'FROM /messages/* INTO BrokeredEndpoint("/modules/nosuch/inputs/in")',
        "up": "FROM /messages/modules/sensor/outputs/* INTO $upstream",
    }))
    status = wait_for(lambda: registry_manager.get_module_twin(DEVICE, "$edgeHub").properties.reported.get("lastDesiredStatus"),
                      what="$edgeHub status")
    assert status["code"] == 400 and "'nosuch'" in status["description"]
    wait_for(lambda: len(hub.events()) >= 2, what="sensor readings upstream")


def test_manifest_without_edge_hub_system_module_is_refused_and_not_applied(hub, registry, edge):
    device, registry_manager, configs = edge
    deploy(configs, manifest(registry, {"echo": {"env": {"MODE": "echo"}}}, {"up": "FROM /* INTO $upstream"}))
    wait_for(lambda: module_status(registry_manager, "echo") == "running", what="echo running")
    deploy(configs, manifest(registry, {"other": {"env": {"MODE": "echo"}}}, {"up": "FROM /* INTO $upstream"},
                             system_edge_hub=False))
    status = wait_for(lambda: agent_reported(registry_manager)["lastDesiredStatus"]["code"] == 400
                      and agent_reported(registry_manager)["lastDesiredStatus"], what="refusal")
    assert "edgeHub" in status["description"]
    assert module_status(registry_manager, "echo") == "running"
    assert "other" not in agent_reported(registry_manager)["modules"]


def test_reported_last_desired_version_is_the_twins_desired_version(hub, registry, edge):
    device, registry_manager, configs = edge
    deploy(configs, manifest(registry, {"echo": {"env": {"MODE": "echo"}}}, {"up": "FROM /* INTO $upstream"}))
    twin = wait_for(lambda: (t := registry_manager.get_module_twin(DEVICE, "$edgeAgent")).properties.reported.get(
        "lastDesiredVersion") is not None and t, what="a reported version")
    assert twin.properties.reported["lastDesiredVersion"] == twin.properties.desired["$version"]
    hub_twin = wait_for(lambda: (t := registry_manager.get_module_twin(DEVICE, "$edgeHub")).properties.reported.get(
        "lastDesiredVersion") is not None and t, what="edge hub version")
    assert hub_twin.properties.reported["lastDesiredVersion"] == hub_twin.properties.desired["$version"]
