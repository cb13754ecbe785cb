"""The Functions document's flow with a blob trigger, end to end on the emulator (or Azure):
register a model, package it as a function app with a blob trigger (input/{blobname}.json ->
output/{blobname}_out.json), run the package as a function app, upload a blob with
azure-storage-blob and read the predictions from the output blob, then delete the app."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from aml_core.environment import Environment
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_core.profiles import CloudProfile
from aml_core.webservice import Webservice
from aml_core.workspace import Workspace
from aml_provider_functions import BLOB_TRIGGER, FunctionsWebservice, package

HERE = Path(__file__).resolve().parent
INPUT_PATH = "input/{blobname}.json"
OUTPUT_PATH = "output/{blobname}_out.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default=None, help="where the workspace goes (default: a temporary folder)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="functions-blob-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ws = Workspace.create(workdir / "ws", container_registry="profile:emulator", exist_ok=True)
    (workdir / "linear.json").write_text(json.dumps({"weights": [0.5, -1.0, 2.0], "bias": 1.0}))
    model = Model.register(ws, model_path=str(workdir / "linear.json"), model_name="linear")
    print(f"Registered {model.name}:{model.version}")

    # "When you create an inference configuration for Azure Functions you must use an Environment"
    myenv = Environment(name="myenv")
    inference_config = InferenceConfig(entry_script="score.py", source_directory=str(HERE), environment=myenv)
    blob = package(ws, [model], inference_config, functions_enabled=True, trigger=BLOB_TRIGGER,
                   input_path=INPUT_PATH, output_path=OUTPUT_PATH)
    blob.wait_for_creation(show_output=True)
    print(f"Package location: {blob.location}")

    # az functionapp create --deployment-container-image-name ... + the trigger's connection string
    config = FunctionsWebservice.deploy_configuration(trigger=BLOB_TRIGGER, input_path=INPUT_PATH,
                                                      output_path=OUTPUT_PATH)
    service = Webservice.deploy_from_image(ws, "functions-blob", blob, deployment_config=config)
    service.wait_for_deployment(show_output=True)
    print(f"State: {service.state}")

    storage = CloudProfile.load().extra["storage_connection_string"]
    blobs = BlobServiceClient.from_connection_string(storage)
    data = {"data": [[1, 2, 3, 4], [10, 9, 8, 7]]}
    blobs.get_blob_client("input", "sample.json").upload_blob(json.dumps(data), overwrite=True)
    print("Uploaded input/sample.json")
    output = blobs.get_blob_client("output", "sample_out.json")
    deadline = time.monotonic() + 120
    while not output.exists():
        if time.monotonic() > deadline:
            raise SystemExit("No output blob within 120 s; the function app's log:\n" + service.get_logs())
        time.sleep(0.2)
    print(f"Predictions: {json.loads(output.download_blob().readall())}")
    print(f"Last log line: {service.get_logs().strip().splitlines()[-1]}")
    service.delete()
    print("Service deleted")


if __name__ == "__main__":
    main()
