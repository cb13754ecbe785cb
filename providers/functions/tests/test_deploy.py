"""Function apps deployed through azure-mgmt-web onto the emulator's ARM (plan, site of kind
functionapp,linux,container, app settings, list-keys), driven end to end with the real SDKs."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from functions_testing import expected, inference_config, register_model, wait_until


@pytest.fixture
def ws(emulator, tmp_path):
    from aml_core.workspace import Workspace

    return Workspace.create(tmp_path / "ws", container_registry="profile:emulator")


@pytest.fixture
def model(ws, tmp_path):
    return register_model(ws, tmp_path)


def _web_client(emulator):
    from azure.mgmt.web import WebSiteManagementClient

    from aml_azure_common import management_client

    return management_client(WebSiteManagementClient, emulator.profile())


def test_http_function_app_with_function_keys(ws, model, emulator):
    from aml_core.model import Model
    from aml_provider_functions import FunctionsWebservice

    config = FunctionsWebservice.deploy_configuration(trigger="http", auth_level="function")
    service = Model.deploy(ws, "fn-http", [model], inference_config(), config)
    service.wait_for_deployment()
    assert service.state == "Healthy", service.error
    assert isinstance(service, FunctionsWebservice) and service.scoring_uri.endswith("/api/score")
    assert service.run({"data": [[1, 2, 3]]})["predictions"] == expected([[1, 2, 3]])
    # the site is what az functionapp create makes, and the keys are ARM's
    web = _web_client(emulator)
    site = web.web_apps.get(emulator.resource_group, "fn-http")
    assert site.kind == "functionapp,linux,container" and site.site_config.linux_fx_version.startswith("DOCKER|")
    settings = web.web_apps.list_application_settings(emulator.resource_group, "fn-http").properties
    assert settings["AzureWebJobsStorage"] == emulator.storage.connection_string
    assert settings["FUNCTIONS_WORKER_RUNTIME"] == "python" and "AML_FUNCTIONS_KEYS" not in settings
    function_key = web.web_apps.list_function_keys(emulator.resource_group, "fn-http", "score").properties["default"]
    host = web.web_apps.list_host_keys(emulator.resource_group, "fn-http")
    assert service.get_function_keys() == {"default": function_key}
    assert service.get_host_keys()["masterKey"] == host.master_key
    body = json.dumps({"data": [[0, 1, 0]]})
    verify = str(emulator.ca_bundle)
    ok = requests.post(service.scoring_uri, data=body, headers={"x-functions-key": function_key}, verify=verify,
                       timeout=60)
    assert ok.status_code == 200 and ok.json()["predictions"] == expected([[0, 1, 0]])
    assert requests.post(service.scoring_uri, data=body, params={"code": host.master_key}, verify=verify,
                         timeout=60).status_code == 200
    assert requests.post(service.scoring_uri, data=body, verify=verify, timeout=60).status_code == 401
    assert requests.post(service.scoring_uri, data=body, headers={"x-functions-key": "nope"}, verify=verify,
                         timeout=60).status_code == 401
    logs = service.get_logs()
    assert "Executed 'Functions.score' (Succeeded" in logs and function_key not in logs
    service.delete()
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        web.web_apps.get(emulator.resource_group, "fn-http")


def _output(blobs, name):
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return blobs.get_blob_client("output", name).download_blob().readall()
    except ResourceNotFoundError:
        return None


def test_blob_function_app_end_to_end(ws, model, emulator):
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

    from aml_core.errors import NotSupported
    from aml_core.webservice import Webservice
    from aml_provider_functions import FunctionsWebservice, package_blob

    # the documents' flow: package, then deploy the package's image as a function app
    blob = package_blob(ws, [model], inference_config(), input_path="input/{blobname}.json",
                        output_path="output/{blobname}_out.json")
    config = FunctionsWebservice.deploy_configuration(trigger="blob", input_path="input/{blobname}.json",
                                                      output_path="output/{blobname}_out.json")
    service = Webservice.deploy_from_image(ws, "fn-blob", blob, deployment_config=config)
    service.wait_for_deployment()
    assert service.state == "Healthy", service.error
    blobs = BlobServiceClient.from_connection_string(emulator.storage.connection_string)
    rows = [[1, 2, 3], [4, 5, 6]]
    blobs.get_blob_client("input", "batch1.json").upload_blob(json.dumps({"data": rows}))
    result = json.loads(wait_until(lambda: _output(blobs, "batch1_out.json"), "the output blob",
                                   logs=service.get_logs))
    assert result["predictions"] == expected(rows)
    blobs.get_blob_client("input", "bad.json").upload_blob(b"[1, 2")
    queue = QueueClient.from_connection_string(emulator.storage.connection_string, "webjobs-blobtrigger-poison")

    def poisoned():
        try:
            return [json.loads(base64.b64decode(m.content)) for m in queue.peek_messages(max_messages=32)]
        except Exception:  # the queue is created with the first poison message
            return []

    message = wait_until(poisoned, "the poison message", logs=service.get_logs)[0]
    assert message["BlobName"] == "bad.json" and message["FunctionId"] == "fn-blob.Functions.blob_score"
    assert blobs.get_blob_client("input", "bad.json").download_blob().readall() == b"[1, 2"
    logs = service.get_logs()
    assert "moved to the poison queue" in logs and "Executed 'Functions.blob_score' (Failed" in logs
    blobs.get_blob_client("input", "batch2.json").upload_blob(json.dumps({"data": [[1, 0, 0]]}))
    wait_until(lambda: _output(blobs, "batch2_out.json"), "output after the poison blob", logs=service.get_logs)
    assert Webservice(ws, "fn-blob").state == "Healthy"
    with pytest.raises(NotSupported, match="run\\(\\) on a blob function app"):
        service.run({"data": [[1, 2, 3]]})
    service.delete()


def test_service_bus_queue_function_app_end_to_end(ws, model, emulator):
    from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

    from aml_core.webservice import Webservice
    from aml_provider_functions import FunctionsWebservice, package_service_bus_queue

    emulator.servicebus.create_queue("requests", max_delivery_count=3)
    emulator.servicebus.create_queue("predictions")
    package = package_service_bus_queue(ws, [model], inference_config(), input_queue_name="requests",
                                        output_queue_name="predictions")
    config = FunctionsWebservice.deploy_configuration(trigger="service_bus_queue", input_queue_name="requests",
                                                      output_queue_name="predictions")
    service = Webservice.deploy_from_image(ws, "fn-queue", package, deployment_config=config)
    service.wait_for_deployment()
    assert service.state == "Healthy", service.error
    rows = [[2, 0, 1]]
    with ServiceBusClient.from_connection_string(emulator.servicebus.connection_string) as client:
        with client.get_queue_sender("requests") as sender:
            sender.send_messages(ServiceBusMessage(json.dumps({"data": rows})))
            sender.send_messages(ServiceBusMessage("not json"))
        with client.get_queue_receiver("predictions", max_wait_time=2) as receiver:
            def prediction():
                got = receiver.receive_messages(max_message_count=1, max_wait_time=1)
                for message in got:
                    receiver.complete_message(message)
                return json.loads(str(got[0])) if got else None

            assert wait_until(prediction, "the prediction", logs=service.get_logs)["predictions"] == expected(rows)
        with client.get_queue_receiver("requests", sub_queue=ServiceBusSubQueue.DEAD_LETTER,
                                       max_wait_time=2) as dead:
            found = wait_until(lambda: dead.receive_messages(max_message_count=1, max_wait_time=1),
                               "the dead-lettered message", logs=service.get_logs)
            assert str(found[0]) == "not json" and found[0].dead_letter_reason == "MaxDeliveryCountExceeded"
            dead.complete_message(found[0])
        logs = service.get_logs()
        assert logs.count("Executed 'Functions.queue_score' (Failed") == 3 and "JSONDecodeError" in logs
        with client.get_queue_sender("requests") as sender:
            sender.send_messages(ServiceBusMessage(json.dumps({"data": [[0, 0, 0]]})))
        with client.get_queue_receiver("predictions", max_wait_time=2) as receiver:
            got = wait_until(lambda: receiver.receive_messages(max_message_count=1, max_wait_time=1),
                             "the prediction after the dead letter", logs=service.get_logs)
            assert json.loads(str(got[0]))["predictions"] == expected([[0, 0, 0]])
            receiver.complete_message(got[0])
    service.delete()
