"""The Functions host inside a function app image, run on the core's process engine against
Azurite (the emulator's storage service), driven with the real azure-storage SDKs and requests."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from functions_testing import expected, inference_config, register_model, wait_until


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    from aml_emulator.storage import StorageService

    service = StorageService(tmp_path_factory.mktemp("azurite")).start()
    yield service
    service.stop()


@pytest.fixture
def ws(tmp_path):
    from aml_core.workspace import Workspace

    return Workspace.create(tmp_path / "ws")


@pytest.fixture
def model(ws, tmp_path):
    return register_model(ws, tmp_path)


@pytest.fixture
def engine():
    from aml_core.engines import ProcessEngine

    return ProcessEngine()


def _run(engine, location, env, name):
    container = engine.run(location, name=name, env=env)
    wait_until(lambda: _answers(container.url) or container.wait(timeout=0) is not None, "the host answering",
               logs=container.logs)
    assert container.wait(timeout=0) is None, container.logs()
    return container


def _answers(url):
    try:
        return requests.get(url + "/", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _output(blobs, name):
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return blobs.get_blob_client("output", name).download_blob().readall()
    except ResourceNotFoundError:
        return None


def _poison_messages(storage):
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient

    queue = QueueClient.from_connection_string(storage.connection_string, "webjobs-blobtrigger-poison")
    try:
        return [json.loads(base64.b64decode(m.content)) for m in queue.peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


def test_blob_trigger_scores_once_across_restarts_and_poisons_bad_blobs(ws, model, storage, engine):
    from azure.storage.blob import BlobServiceClient

    from aml_provider_functions import package_blob

    package = package_blob(ws, [model], inference_config(), input_path="input/{blobname}.json",
                           output_path="output/{blobname}_out.json")
    env = {"AzureWebJobsStorage": storage.connection_string, "TriggerConnectionString": storage.connection_string,
           "WEBSITE_SITE_NAME": "blobapp"}
    blobs = BlobServiceClient.from_connection_string(storage.connection_string)
    host = _run(engine, package.location, env, "blobapp")
    try:
        rows = [[1, 2, 3], [10, 9, 8]]
        blobs.get_blob_client("input", "first.json").upload_blob(json.dumps({"data": rows}))
        result = json.loads(wait_until(lambda: _output(blobs, "first_out.json"), "the output blob", logs=host.logs))
        assert result["predictions"] == expected(rows)
        # a blob outside the pattern is not the function's
        blobs.get_blob_client("input", "notes.txt").upload_blob(b"not for scoring")
        # a bad payload: five attempts, then the poison queue; the blob stays, the app keeps running
        blobs.get_blob_client("input", "broken.json").upload_blob(b"{not json")
        poison = wait_until(lambda: _poison_messages(storage), "the poison message", logs=host.logs)
        assert poison[0]["BlobName"] == "broken.json" and poison[0]["ContainerName"] == "input"
        assert poison[0]["FunctionId"] == "blobapp.Functions.blob_score" and poison[0]["BlobType"] == "BlockBlob"
        assert blobs.get_blob_client("input", "broken.json").download_blob().readall() == b"{not json"
        assert host.logs().count("Executed 'Functions.blob_score' (Failed") == 5
        assert "moved to the poison queue" in host.logs() and "JSONDecodeError" in host.logs()
        blobs.get_blob_client("input", "second.json").upload_blob(json.dumps({"data": [[0, 0, 1]]}))
        second = json.loads(wait_until(lambda: _output(blobs, "second_out.json"), "the second output",
                                       logs=host.logs))
        assert second["predictions"] == expected([[0, 0, 1]]) and second["init_calls"] == 1
        assert _output(blobs, "notes_out.json") is None
    finally:
        host.stop()
    # a new host: receipts say both blobs were handled, so neither runs again
    blobs.get_blob_client("output", "first_out.json").delete_blob()
    again = _run(engine, package.location, env, "blobapp-again")
    try:
        blobs.get_blob_client("input", "third.json").upload_blob(json.dumps({"data": [[1, 1, 1]]}))
        wait_until(lambda: _output(blobs, "third_out.json"), "the third output", logs=again.logs)
        assert _output(blobs, "first_out.json") is None
        assert "broken.json" not in again.logs() and len(_poison_messages(storage)) == 1
    finally:
        again.stop()


def test_http_trigger_key_levels(ws, model, storage, engine):
    from aml_provider_functions import package_http

    package = package_http(ws, [model], inference_config(), auth_level="function")
    keys = {"masterKey": "master-secret", "functionKeys": {"default": "host-function-key"},
            "functions": {"score": {"default": "score-key"}}}
    host = _run(engine, package.location, {"AML_FUNCTIONS_KEYS": json.dumps(keys), "WEBSITE_SITE_NAME": "httpapp"},
                "httpapp")
    try:
        url = f"{host.url}/api/score"
        body = json.dumps({"data": [[1, 2, 3]]})
        assert requests.post(url, data=body, timeout=30).status_code == 401
        assert requests.post(url, data=body, headers={"x-functions-key": "wrong"}, timeout=30).status_code == 401
        for key in ("score-key", "host-function-key", "master-secret"):
            answer = requests.post(url, data=body, headers={"x-functions-key": key}, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == expected([[1, 2, 3]])
        assert requests.post(url, params={"code": "score-key"}, data=body, timeout=30).status_code == 200
        assert requests.get(f"{host.url}/admin/host/status", params={"code": "score-key"}, timeout=30).status_code == 401
        status = requests.get(f"{host.url}/admin/host/status", headers={"x-functions-key": "master-secret"}, timeout=30)
        assert status.json()["state"] == "Running" and status.json()["id"] == "httpapp"
        bad = requests.post(url, data="{oops", headers={"x-functions-key": "score-key"}, timeout=30)
        assert bad.status_code == 500 and "JSONDecodeError" in bad.json()["message"]
        assert requests.post(url, data=body, headers={"x-functions-key": "score-key"}, timeout=30).status_code == 200
        assert requests.post(f"{host.url}/api/missing", timeout=30).status_code == 404
        assert "master-secret" not in host.logs() and "score-key" not in host.logs()
    finally:
        host.stop()


def test_a_blob_whose_host_is_killed_mid_event_is_scored_once_by_the_next_host(ws, model, storage, engine, tmp_path):
    import os
    import signal

    from azure.storage.blob import BlobServiceClient

    from aml_provider_functions import package_blob

    package = package_blob(ws, [model], inference_config(), input_path="killin/{blobname}.json",
                           output_path="killout/{blobname}_out.json")
    env = {"AzureWebJobsStorage": storage.connection_string, "TriggerConnectionString": storage.connection_string,
           "WEBSITE_SITE_NAME": "killapp"}
    blobs = BlobServiceClient.from_connection_string(storage.connection_string)
    gate = tmp_path / "release"
    host = _run(engine, package.location, env, "killapp")
    try:
        blobs.get_blob_client("killin", "slow.json").upload_blob(
            json.dumps({"data": [[1, 1, 1]], "hold_until_exists": str(gate)}))
        wait_until(lambda: "Executing 'Functions.blob_score'" in host.logs(), "the event in progress",
                   logs=host.logs)
        os.killpg(host.pid, signal.SIGKILL)  # no shutdown: the attempt is cut short
        host.wait(timeout=30)
    finally:
        host.stop()
    receipts = blobs.get_container_client("azure-webjobs-hosts")
    (receipt,) = [b for b in receipts.list_blobs(name_starts_with="blobreceipts/killapp/", include=["metadata"])
                  if b.name.endswith("/killin/slow.json")]
    assert receipt.metadata == {"AttemptCount": "1"}  # counted, not completed
    assert not blobs.get_blob_client("killout", "slow_out.json").exists()
    gate.write_text("go")
    again = _run(engine, package.location, env, "killapp-again")
    try:
        out = wait_until(lambda: blobs.get_blob_client("killout", "slow_out.json").exists(), "the output",
                         logs=again.logs)
        assert out
        result = json.loads(blobs.get_blob_client("killout", "slow_out.json").download_blob().readall())
        assert result["predictions"] == expected([[1, 1, 1]])
        wait_until(lambda: receipts.get_blob_client(receipt.name).get_blob_properties().metadata.get("Completed"),
                   "the receipt completed", logs=again.logs)
        assert receipts.get_blob_client(receipt.name).get_blob_properties().metadata["AttemptCount"] == "2"
        assert again.logs().count("Executed 'Functions.blob_score' (Succeeded") == 1
    finally:
        again.stop()


def test_a_message_whose_host_is_killed_mid_event_is_redelivered_and_scored_once(ws, model, engine, tmp_path):
    import os
    import signal

    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    from aml_emulator.servicebus import ServiceBusService
    from aml_provider_functions import package_service_bus_queue

    broker = ServiceBusService(tmp_path / "sb").start()
    try:
        broker.create_queue("in", lock_duration=2)  # the killed host's lock lapses within 2 s
        broker.create_queue("out")
        package = package_service_bus_queue(ws, [model], inference_config(), input_queue_name="in",
                                            output_queue_name="out")
        env = {"ServiceBusConnection": broker.connection_string, "WEBSITE_SITE_NAME": "queueapp"}
        gate = tmp_path / "release"
        host = _run(engine, package.location, env, "queueapp")
        try:
            with ServiceBusClient.from_connection_string(broker.connection_string) as client, \
                    client.get_queue_sender("in") as sender:
                sender.send_messages(ServiceBusMessage(json.dumps({"data": [[3, 2, 1]],
                                                                   "hold_until_exists": str(gate)})))
            wait_until(lambda: "Executing 'Functions.queue_score'" in host.logs(), "the event in progress",
                       logs=host.logs)
            os.killpg(host.pid, signal.SIGKILL)
            host.wait(timeout=30)
        finally:
            host.stop()
        assert len(broker.peek("in")) == 1 and broker.peek("out") == []  # nothing lost, nothing sent
        gate.write_text("go")
        again = _run(engine, package.location, env, "queueapp-again")
        try:
            wait_until(lambda: broker.peek("out"), "the prediction", logs=again.logs)
            wait_until(lambda: not broker.peek("in"), "the request completed", logs=again.logs)
            with ServiceBusClient.from_connection_string(broker.connection_string) as client, \
                    client.get_queue_receiver("out", max_wait_time=2) as receiver:
                got = receiver.receive_messages(max_message_count=5, max_wait_time=2)
                assert [json.loads(str(m))["predictions"] for m in got] == [expected([[3, 2, 1]])]
                receiver.complete_message(got[0])
            assert "DeliveryCount: 1" in again.logs()  # the second delivery of the message
        finally:
            again.stop()
    finally:
        broker.stop()
