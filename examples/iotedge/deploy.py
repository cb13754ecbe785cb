"""Deploy a model to an IoT Edge device, between a simulated sensor and the IoT hub.

The flow of the Azure ML documents: register the model, describe the scoring module and the
routes, ``Model.deploy`` (the module image is packaged and pushed, the deployment manifest is
applied to the device through the IoT hub), then read the result. The hub is the one named
by ``--hub`` in the cloud profile's resource group; the device must be an IoT Edge device
with its runtime running (on the emulator: ``aml iot add-edge-device DEVICE``).

    python deploy.py --hub NAME --device DEVICE [--readings 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import joblib
from sklearn.linear_model import Ridge

from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_core.workspace import Workspace
from aml_provider_iotedge import IotBaseModuleSettings, IotModuleSettings, IotWebservice, publish_sensor_image

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--readings", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aml-iotedge-example-"))
    ws = Workspace.create(work / "ws", container_registry="profile:emulator")
    model_file = work / "temperature_model.pkl"
    joblib.dump(Ridge().fit([[1.0 + i / 10] for i in range(20)], [20.0 + i for i in range(20)]), model_file)
    model = Model.register(ws, model_file, "temperature")

    sensor = publish_sensor_image(ws)
    config = IotWebservice.deploy_configuration(
        device_id=args.device, compute_target_name=args.hub,
        aml_module=IotBaseModuleSettings(name="machinelearningmodule"),
        external_modules=[IotModuleSettings(name="tempSensor", image_location=sensor,
                                            env={"SENSOR_COUNT": str(args.readings), "SENSOR_INTERVAL_SECONDS": "0.2"})],
        routes={
            "sensorToMachineLearning": "FROM /messages/modules/tempSensor/outputs/temperatureOutput "
                                       'INTO BrokeredEndpoint("/modules/machinelearningmodule/inputs/amlInput")',
            "machineLearningToIoTHub": "FROM /messages/modules/machinelearningmodule/outputs/amlOutput INTO $upstream",
        })
    service = Model.deploy(ws, "temperature-anomaly", [model],
                           InferenceConfig(entry_script="score.py", source_directory=str(HERE)), config)
    service.wait_for_deployment(show_output=True)
    print(f"State: {service.state}")
    print("Test message:", service.send_test_message({"n": -1, "machine": {"temperature": 40.0, "pressure": 1.0}}))


if __name__ == "__main__":
    main()
