import json
import os
import sys
import threading

from azure.iot.device import IoTHubModuleClient, Message


def main() -> int:
    mode = os.environ.get("MODE", "echo")
    if mode == "crash":
        print("crashing on purpose", flush=True)
        return 3
    client = IoTHubModuleClient.create_from_edge_environment()
    client.connect()
    client.patch_twin_reported_properties({"mode": mode})
    print(f"module {os.environ['IOTEDGE_MODULEID']} connected in mode {mode}", flush=True)
    if mode == "sensor":
        for n in range(int(os.environ.get("COUNT", "3"))):
            message = Message(json.dumps({"n": n}), content_encoding="utf-8", content_type="application/json")
            message.custom_properties["kind"] = "reading"
            client.send_message_to_output(message, "readings")
        print("sent all readings", flush=True)
    else:
        def forward(message):
            out = Message(json.dumps({"echo": json.loads(message.data)}))
            out.custom_properties.update(message.custom_properties)
            client.send_message_to_output(out, "output1")

        client.on_message_received = forward
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
