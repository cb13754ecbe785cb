"""Messages per second sensor -> model -> $upstream through the emulated edge hub, and the
latency each message sees from the sensor to the hub's events endpoint (median, p99), next to
calling the same run() in-process through the scoring runtime's script loader.

    .venv/bin/python benchmarks/iotedge_messages.py [--messages 100] [--interval 0.02]

Needs root (the IoT SDKs' fixed ports 443/8883 on loopback addresses). Runs the emulator
(registry, ARM, IoT hub) in-process, deploys the model with Model.deploy on an emulated edge
device, and lets the simulated sensor send ``--messages`` readings as fast as it can.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "providers" / "iotedge" / "tests" / "assets"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _parse(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between readings (0: as fast as it can)")
    args = parser.parse_args()

    import joblib
    from azure.core.credentials import AccessToken
    from azure.mgmt.iothub import IotHubClient
    from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo
    from sklearn.linear_model import Ridge

    from aml_core.inference import InferenceConfig
    from aml_core.model import Model
    from aml_core.runtime.script import load_script
    from aml_core.workspace import Workspace
    from aml_emulator import Emulator
    from aml_provider_iotedge import IotBaseModuleSettings, IotModuleSettings, IotWebservice, publish_sensor_image

    work = Path(tempfile.mkdtemp(prefix="aml-bench-iot-"))
    os.environ["AML_PROFILE_DIR"] = str(work / "profiles")
    try:
        with Emulator(work / "emulator", services=["registry", "arm", "iothub"], arm_retry_after=0.1) as emu:
            profile = emu.profile()
            type(profile).from_dict({**profile.to_dict(), "extra": {**profile.extra, "iothub_name": "benchhub"}}).save()

            class Token:
                def get_token(self, *scopes, **kwargs):
                    return AccessToken(emu.arm_token, 4102444800)

            IotHubClient(Token(), emu.subscription_id, base_url=emu.arm.url,
                         credential_scopes=["https://management.azure.com/.default"],
                         connection_verify=str(emu.ca_bundle)).iot_hub_resource.begin_create_or_update(
                emu.resource_group, "benchhub", IotHubDescription(location="westus", sku=IotHubSkuInfo(name="S1"))).result()
            hub = emu.iothub.hub("benchhub")
            hub.add_edge_device("bench-edge")
            workspace = Workspace.create(work / "ws", container_registry="profile:emulator")
            model_path = work / "temperature_model.pkl"
            joblib.dump(Ridge().fit([[1.0 + i / 10] for i in range(20)], [20.0 + i for i in range(20)]), model_path)
            model = Model.register(workspace, model_path, "temperature")
            app = work / "app"
            app.mkdir()
            shutil.copyfile(ASSETS / "score_anomaly.py", app / "score.py")
            config = IotWebservice.deploy_configuration(
                device_id="bench-edge", aml_module=IotBaseModuleSettings(name="model"),
                routes={"toModel": 'FROM /messages/modules/sensor/outputs/temperatureOutput '
                                   'INTO BrokeredEndpoint("/modules/model/inputs/amlInput")',
                        "up": "FROM /messages/modules/model/outputs/amlOutput INTO $upstream",
                        # the readings themselves too: the one-hop path the model's hop is compared with
                        "readingsUp": "FROM /messages/modules/sensor/outputs/temperatureOutput INTO $upstream"},
                external_modules=[IotModuleSettings(name="sensor", image_location=publish_sensor_image(workspace),
                                                    env={"SENSOR_START_DELAY_SECONDS": "8",
                                                         "SENSOR_COUNT": str(args.messages),
                                                         "SENSOR_INTERVAL_SECONDS": str(args.interval)})])
            Model.deploy(workspace, "bench", [model], InferenceConfig(entry_script="score.py", source_directory=str(app)),
                         config).wait_for_deployment()
            deadline = time.monotonic() + 300
            while len([e for e in hub.events() if e["moduleId"] == "model"]) < args.messages:
                if time.monotonic() > deadline:
                    print("not every prediction arrived within 300 s", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            while len([e for e in hub.events() if e["moduleId"] == "sensor"]) < args.messages:
                if time.monotonic() > deadline:
                    print("not every reading arrived within 300 s", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            events = hub.events()
            created, direct_up, via_model = {}, {}, {}
            for event in events:
                body = json.loads(event["body"])
                if event["moduleId"] == "sensor":
                    created[body["n"]] = _parse(body["timeCreated"])
                    direct_up[body["n"]] = _parse(event["enqueuedTimeUtc"])
                else:
                    via_model.setdefault(body["n"], _parse(event["enqueuedTimeUtc"]))
            numbers = [json.loads(e["body"])["n"] for e in events if e["moduleId"] == "model"]
            in_order = numbers == list(range(args.messages))
            arrivals = sorted(via_model.values())
            # the sensor starts sending 8 s after it starts, when the model is scoring, so no
            # reading waits for the model module's start-up
            one_hop = [(direct_up[n] - created[n]) * 1000 for n in created]
            two_hops = [(via_model[n] - created[n]) * 1000 for n in created]
            span = arrivals[-1] - arrivals[0]

            # the same run() in-process, through the runtime's script loader
            os.environ["AZUREML_MODEL_DIR"] = str(work)
            script = load_script(str(app / "score.py"), [str(app)])
            script.init()
            reading = json.dumps({"n": 1, "machine": {"temperature": 21.0, "pressure": 1.1}})
            direct = []
            for _ in range(args.messages):
                started = time.perf_counter()
                script.run(reading)
                direct.append(time.perf_counter() - started)
            print(json.dumps({
                "messages": args.messages, "sensor_interval_s": args.interval, "in_order_none_lost": in_order,
                "predictions_per_second": round((len(arrivals) - 1) / span, 1) if span > 0 else None,
                "sensor_to_upstream_ms": {"median": round(statistics.median(one_hop), 2),
                                          "p99": round(_percentile(one_hop, 0.99), 2)},
                "sensor_to_model_to_upstream_ms": {"median": round(statistics.median(two_hops), 2),
                                                   "p99": round(_percentile(two_hops, 0.99), 2)},
                "direct_run_ms": {"median": round(statistics.median(direct) * 1000, 3),
                                  "p99": round(_percentile(direct, 0.99) * 1000, 3)},
            }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
