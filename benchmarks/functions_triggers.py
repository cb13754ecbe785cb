"""Functions target benchmarks, in one run:

1. HTTP-trigger throughput of a function app image against the same model's scoring image
   called directly (both on the process engine, one sequential client each; target ≥ 0.8×);
2. blob-trigger latency: upload ``input/<n>.json`` with azure-storage-blob until
   ``output/<n>_out.json`` exists (median, p99 over ``--events`` blobs, one at a time);
3. queue-trigger latency: send a message with azure-servicebus until the prediction arrives on
   the output queue (median, p99 over ``--events`` messages, one at a time);
4. the emulator's Service Bus broker: send then receive-and-complete throughput with the
   azure-servicebus SDK (``--messages`` messages, one per send call).

Azurite (the emulator's storage service) and the Service Bus broker run in this process's
children/threads on loopback; nothing goes through ARM, so the figures are the triggers' own.

    .venv/bin/python benchmarks/functions_triggers.py --requests 200 --events 20 --messages 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "providers" / "functions" / "tests" / "app"
sys.path.insert(0, str(ROOT / "providers" / "functions" / "tests"))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _wait(condition, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise TimeoutError("condition not met")


def _up(url: str) -> bool:
    try:
        return requests.get(url + "/", timeout=1).status_code < 500
    except requests.RequestException:
        return False


def _throughput(url: str, count: int, body: str) -> float:
    session = requests.Session()
    for _ in range(5):  # warm-up
        session.post(url, data=body, timeout=30).raise_for_status()
    started = time.perf_counter()
    for _ in range(count):
        session.post(url, data=body, timeout=30).raise_for_status()
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()

    from azure.servicebus import ServiceBusClient, ServiceBusMessage
    from azure.storage.blob import BlobServiceClient
    from functions_testing import inference_config, register_model

    from aml_core.engines import ProcessEngine
    from aml_core.model import Model
    from aml_core.workspace import Workspace
    from aml_emulator.servicebus import ServiceBusService
    from aml_emulator.storage import StorageService
    from aml_provider_functions import package_blob, package_http, package_service_bus_queue

    work = Path(tempfile.mkdtemp(prefix="functions-bench-"))
    ws = Workspace.create(work / "ws")
    model = register_model(ws, work)
    engine = ProcessEngine()
    body = json.dumps({"data": [[1, 2, 3], [4, 5, 6]]})
    results: dict[str, object] = {}
    running = []
    storage = StorageService(work / "azurite").start()
    broker = ServiceBusService(work / "servicebus").start()
    try:
        # 1. HTTP trigger vs the scoring runtime
        plain = Model.package(ws, [model], inference_config(), image_name="plain")
        function = package_http(ws, [model], inference_config(), image_name="fnhttp")
        direct = engine.run(plain.location, name="bench-direct")
        host = engine.run(function.location, name="bench-fn", env={"WEBSITE_SITE_NAME": "bench"})
        running += [direct, host]
        _wait(lambda: _up(direct.url) and _up(host.url))
        direct_rps = _throughput(direct.url + "/score", args.requests, body)
        function_rps = _throughput(host.url + "/api/score", args.requests, body)
        results["http"] = {"requests": args.requests, "direct_rps": round(direct_rps, 1),
                           "function_rps": round(function_rps, 1), "ratio": round(function_rps / direct_rps, 2)}

        # 2. blob trigger latency
        env = {"AzureWebJobsStorage": storage.connection_string,
               "TriggerConnectionString": storage.connection_string, "WEBSITE_SITE_NAME": "benchblob"}
        blob_app = package_blob(ws, [model], inference_config(), input_path="input/{n}.json",
                                output_path="output/{n}_out.json", image_name="fnblob")
        blob_host = engine.run(blob_app.location, name="bench-blob", env=env)
        running.append(blob_host)
        _wait(lambda: _up(blob_host.url))
        blobs = BlobServiceClient.from_connection_string(storage.connection_string)
        latencies = []
        for n in range(args.events):
            started = time.perf_counter()
            blobs.get_blob_client("input", f"{n}.json").upload_blob(body)
            output = blobs.get_blob_client("output", f"{n}_out.json")
            _wait(output.exists)
            latencies.append((time.perf_counter() - started) * 1000)
        results["blob"] = {"events": args.events, "median_ms": round(statistics.median(latencies), 1),
                           "p99_ms": round(_percentile(latencies, 0.99), 1)}

        # 3. queue trigger latency
        broker.create_queue("requests")
        broker.create_queue("predictions")
        queue_app = package_service_bus_queue(ws, [model], inference_config(), input_queue_name="requests",
                                              output_queue_name="predictions", image_name="fnqueue")
        queue_host = engine.run(queue_app.location, name="bench-queue",
                                env={"ServiceBusConnection": broker.connection_string,
                                     "WEBSITE_SITE_NAME": "benchqueue"})
        running.append(queue_host)
        _wait(lambda: _up(queue_host.url))
        latencies = []
        with ServiceBusClient.from_connection_string(broker.connection_string) as client, \
                client.get_queue_sender("requests") as sender, \
                client.get_queue_receiver("predictions", max_wait_time=30) as receiver:
            for _ in range(args.events):
                started = time.perf_counter()
                sender.send_messages(ServiceBusMessage(body))
                got = receiver.receive_messages(max_message_count=1, max_wait_time=30)
                if not got:
                    raise TimeoutError("no prediction on the output queue within 30 s")
                latencies.append((time.perf_counter() - started) * 1000)
                receiver.complete_message(got[0])
        results["queue"] = {"events": args.events, "median_ms": round(statistics.median(latencies), 1),
                            "p99_ms": round(_percentile(latencies, 0.99), 1)}

        # 4. the broker's send + receive throughput with the SDK
        broker.create_queue("throughput")
        with ServiceBusClient.from_connection_string(broker.connection_string) as client:
            with client.get_queue_sender("throughput") as sender:
                started = time.perf_counter()
                for i in range(args.messages):
                    sender.send_messages(ServiceBusMessage(f"message {i}"))
                send_seconds = time.perf_counter() - started
            received = 0
            with client.get_queue_receiver("throughput", max_wait_time=5, prefetch_count=50) as receiver:
                started = time.perf_counter()
                while received < args.messages:
                    batch = receiver.receive_messages(max_message_count=50, max_wait_time=5)
                    if not batch:
                        break
                    for message in batch:
                        receiver.complete_message(message)
                    received += len(batch)
                receive_seconds = time.perf_counter() - started
        results["servicebus"] = {"messages": args.messages, "received": received,
                                 "send_per_s": round(args.messages / send_seconds, 1),
                                 "receive_complete_per_s": round(received / receive_seconds, 1)}
    finally:
        for container in running:
            container.stop()
        broker.stop()
        storage.stop()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
