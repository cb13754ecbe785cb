from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback

INPUT = os.environ.get("AML_IOT_INPUT", "amlInput")
OUTPUT = os.environ.get("AML_IOT_OUTPUT", "amlOutput")
#: once asked to stop, the module exits after this long without a new message
DRAIN_QUIET_SECONDS = 0.5
#: seconds between attempts to send a result while the edge hub is unreachable (it restarts,
#: or its host is busy): the module holds the result rather than lose the message
SEND_RETRY_SECONDS = 0.2
log = logging.getLogger("aml_iot_module")


def _load():
    from aml_core.runtime.script import load_script

    source_dir = os.environ.get("AZUREML_SOURCE_DIRECTORY", "")
    entry = os.path.join(source_dir, os.environ["AZUREML_ENTRY_SCRIPT"])
    return load_script(entry, [source_dir, os.path.dirname(entry), os.environ.get("AML_APP_ROOT", "")])


def _score(script, body: str):
    if script.mode == "schema":
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("the message body must be a JSON object for an inference-schema run()")
        kwargs = {p.name: document.get(p.name, p.default) for p in script.schema_params}
        return script.run(**kwargs)
    if script.mode == "raw":
        raise ValueError("@rawhttp entry scripts cannot score IoT messages; take the body as a string")
    return script.run(**{script.data_param: body})


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from azure.iot.device import IoTHubModuleClient, Message, MethodResponse
    from azure.iot.device.exceptions import (ConnectionDroppedError, ConnectionFailedError, NoConnectionError,
                                             OperationCancelled, OperationTimeout)
    from aml_core.runtime.script import EXIT_SCRIPT_FAILED

    try:
        script = _load()
        script.init()
    except Exception as exc:  # init() failing ends the module, as the HTTP server exits
        print(f"Failed to start the scoring module: {type(exc).__name__}: {exc}", flush=True)
        traceback.print_exc()
        return EXIT_SCRIPT_FAILED
    client = IoTHubModuleClient.create_from_edge_environment()
    # azure-iot-device (2.x) subscribes to the inputs before it creates the input's inbox, and
    # drops what arrives in between ("No input message inbox"): create the inbox first.
    inboxes = getattr(client, "_inbox_manager", None)
    if inboxes is not None:
        inboxes.get_input_message_inbox(INPUT)
    client.connect()
    lock = threading.Lock()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())

    def score_and_send(body: str, properties: dict, message_id: str | None):
        with lock:
            try:
                result, failed = _score(script, body), False
            except Exception as exc:  # noqa: BLE001 - a bad message must not stop the module
                log.error("run() failed on message %s: %s", message_id, traceback.format_exc())
                result, failed = {"error": f"{type(exc).__name__}: {exc}"}, True
            out = Message(json.dumps(result), content_encoding="utf-8", content_type="application/json")
            out.custom_properties.update({k: v for k, v in properties.items() if k != "aml-error"})
            if failed:
                out.custom_properties["aml-error"] = "true"
            if message_id:
                out.correlation_id = message_id
            send_until_delivered(out)
            return result, failed

    def send_until_delivered(out):
        # The message was acknowledged when it arrived, so giving up here would lose it. While the
        # edge hub restarts, the SDK's automatic connect fails and it raises instead of queueing.
        while True:
            try:
                client.send_message_to_output(out, OUTPUT)
                return
            except (ConnectionDroppedError, ConnectionFailedError, NoConnectionError, OperationCancelled,
                    OperationTimeout) as exc:
                log.warning("edge hub unreachable (%s); retrying the send of message %s",
                            type(exc).__name__, out.correlation_id)
                time.sleep(SEND_RETRY_SECONDS)

    def on_method(request):
        if request.name != "score":
            client.send_method_response(MethodResponse.create_from_method_request(
                request, 404, {"message": f"unknown method {request.name}; this module answers 'score'"}))
            return
        payload = request.payload if isinstance(request.payload, str) else json.dumps(request.payload)
        result, failed = score_and_send(payload, {"aml-test": "true"}, f"test-{request.request_id}")
        client.send_method_response(MethodResponse.create_from_method_request(request, 500 if failed else 200, result))

    def serve_methods():
        # the SDK allows either handlers or receive calls on one client: receive calls throughout
        while True:
            request = client.receive_method_request(block=True, timeout=1)
            if request is not None:
                on_method(request)

    threading.Thread(target=serve_methods, name="methods", daemon=True).start()
    # what the provider waits for: init() done and connected, for this revision of the deployment
    client.patch_twin_reported_properties({"amlModule": {"status": "ready",
                                                         "revision": os.environ.get("AML_MODULE_REVISION", "")}})
    print(f"Scoring module ready: input {INPUT} -> run() -> output {OUTPUT}", flush=True)
    # One message at a time, in arrival order (the SDK's handler pool would reorder them).
    # Asked to stop, it finishes what it has received and leaves once no more arrive.
    while True:
        message = client.receive_message_on_input(INPUT, block=True,
                                                  timeout=DRAIN_QUIET_SECONDS if stopping.is_set() else 1)
        if message is None:
            if stopping.is_set():
                break
            continue
        body = message.data.decode("utf-8") if isinstance(message.data, bytes) else str(message.data)
        score_and_send(body, dict(message.custom_properties), message.message_id)
    print("Scoring module stopping: every received message was scored", flush=True)
    client.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
