from __future__ import annotations

import datetime
import json
import os
import sys
import threading


def reading(n: int) -> dict:
    return {"n": n, "machine": {"temperature": 20.0 + (n % 20), "pressure": 1.0 + (n % 20) / 10},
            "ambient": {"temperature": 21.0, "humidity": 25},
            "timeCreated": datetime.datetime.now(datetime.timezone.utc).isoformat()}


def _sent(client, message, output) -> bool:
    from azure.iot.device.exceptions import ClientError, ConnectionDroppedError, ConnectionFailedError, OperationCancelled

    try:
        client.send_message_to_output(message, output)
        return True
    except (ConnectionDroppedError, ConnectionFailedError, OperationCancelled, ClientError) as exc:
        print(f"sending reading {message.message_id} failed ({type(exc).__name__}); retrying", flush=True)
        return False


def main() -> int:
    from azure.iot.device import IoTHubModuleClient, Message

    count = int(os.environ.get("SENSOR_COUNT", "0"))
    interval = float(os.environ.get("SENSOR_INTERVAL_SECONDS", "1"))
    output = os.environ.get("SENSOR_OUTPUT", "temperatureOutput")
    client = IoTHubModuleClient.create_from_edge_environment()
    client.connect()
    stop = threading.Event()
    stop.wait(float(os.environ.get("SENSOR_START_DELAY_SECONDS", "0")))
    n = 0
    while count == 0 or n < count:
        message = Message(json.dumps(reading(n)), content_encoding="utf-8", content_type="application/json")
        message.message_id = str(n)
        message.custom_properties["sequence"] = str(n)
        while not _sent(client, message, output):  # a lost connection: send the same reading again
            if stop.wait(1.0):
                return 0
        n += 1
        if stop.wait(interval):
            break
    print(f"sensor sent {n} readings", flush=True)
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
