"""package() and its helpers: the reference's validation texts, and the function app inside the image."""

from __future__ import annotations

import json

import pytest
from functions_testing import inference_config, register_model

from aml_core.errors import InvalidConfig

#: where the official Linux Functions images keep the app, relative to the image root
APP_DIR = "home/site/wwwroot"


@pytest.fixture
def ws(tmp_path):
    from aml_core.workspace import Workspace

    return Workspace.create(tmp_path / "ws")


@pytest.fixture
def model(ws, tmp_path):
    return register_model(ws, tmp_path)


def _app_files(ws, location):
    from aml_core.oci import parse_layout_location, read_layout, unpack_image

    directory, tag = parse_layout_location(location)
    image = read_layout(directory, tag=tag)
    root = unpack_image(image, ws.root / "unpacked").rootfs
    return image, root


def test_bad_trigger_names_the_valid_ones(ws, model):
    from aml_provider_functions import package

    with pytest.raises(InvalidConfig, match=r"Invalid trigger queue, valid options are \['http', 'blob', "
                                            r"'service_bus_queue'\]"):
        package(ws, [model], inference_config(), functions_enabled=True, trigger="queue")


def test_bad_option_and_missing_environment(ws, model, tmp_path):
    from aml_core.inference import InferenceConfig
    from aml_provider_functions import BLOB_TRIGGER, package, package_http

    with pytest.raises(InvalidConfig, match="Invalid option auth_level for trigger blob"):
        package(ws, [model], inference_config(), functions_enabled=True, trigger=BLOB_TRIGGER,
                input_path="input/{name}.json", output_path="output/{name}.json", auth_level="function")
    with pytest.raises(InvalidConfig, match="Invalid auth_level root"):
        package_http(ws, [model], inference_config(), auth_level="root")
    bare = InferenceConfig(entry_script="score.py", source_directory=str(inference_config().source_directory))
    with pytest.raises(InvalidConfig, match="needs an InferenceConfig with an Environment"):
        package_http(ws, [model], bare)


def test_blob_paths_are_checked(ws, model):
    from aml_provider_functions import package_blob

    with pytest.raises(InvalidConfig, match="uses \\['other'\\], which input_path"):
        package_blob(ws, [model], inference_config(), input_path="input/{blobname}.json",
                     output_path="output/{other}.json")
    with pytest.raises(InvalidConfig, match="in the input container"):
        package_blob(ws, [model], inference_config(), input_path="data/in/{n}.json", output_path="data/out/{n}.json")
    with pytest.raises(InvalidConfig, match="Invalid input_path 'Input'"):
        package_blob(ws, [model], inference_config(), input_path="Input", output_path="output/x.json")


def test_queue_names_are_checked(ws, model):
    from aml_provider_functions import package_service_bus_queue

    with pytest.raises(InvalidConfig, match="needs output_queue_name"):
        package_service_bus_queue(ws, [model], inference_config(), input_queue_name="in")
    with pytest.raises(InvalidConfig, match="the same queue"):
        package_service_bus_queue(ws, [model], inference_config(), input_queue_name="q", output_queue_name="q")


def test_blob_package_holds_a_function_app(ws, model):
    from aml_provider_functions import BLOB_TRIGGER, package

    blob = package(ws, [model], inference_config(), functions_enabled=True, trigger=BLOB_TRIGGER,
                   input_path="input/{blobname}.json", output_path="output/{blobname}_out.json")
    blob.wait_for_creation(show_output=False)
    assert blob.creation_state == "Succeeded" and blob.location.startswith("oci:")
    image, root = _app_files(ws, blob.location)
    config = image.config_json()["config"]
    assert f"AzureWebJobsScriptRoot=/{APP_DIR}" in config["Env"]
    assert "aml_provider_functions.host" in config["Entrypoint"][-1]
    assert json.loads(config["Labels"]["org.aml.functions.deployed-api-options"]) == {
        "flavor": "functionsApp", "trigger": "Blob", "inPath": "input/{blobname}.json",
        "outPath": "output/{blobname}_out.json"}
    app = root / "home" / "site" / "wwwroot"
    assert json.loads((app / "host.json").read_text())["version"] == "2.0"
    bindings = json.loads((app / "blob_score" / "function.json").read_text())["bindings"]
    assert bindings[0] == {"type": "blobTrigger", "direction": "in", "name": "blobin",
                           "path": "input/{blobname}.json", "connection": "TriggerConnectionString",
                           "dataType": "binary"}
    assert bindings[1]["path"] == "output/{blobname}_out.json" and bindings[1]["direction"] == "out"
    entry = (app / "blob_score" / "__init__.py").read_text()
    assert "def main(blobin: func.InputStream, blobout: func.Out[str])" in entry
    # the host, the scoring runtime and the user's script are all in the image
    assert (root / "opt" / "aml" / "lib" / "aml_provider_functions" / "host" / "__main__.py").is_file()
    assert (root / "opt" / "aml" / "lib" / "aml_core" / "runtime" / "script.py").is_file()
    requirements = (image.config_json()["config"]["Labels"]["org.aml.environment"])
    assert "azure-storage-blob" in requirements and "azure-functions" in requirements


def test_http_and_queue_function_json(ws, model):
    from aml_provider_functions import package_http, package_service_bus_queue

    http = package_http(ws, [model], inference_config(), auth_level="function")
    _, root = _app_files(ws, http.location)
    bindings = json.loads((root / APP_DIR / "score/function.json").read_text())["bindings"]
    assert bindings[0]["type"] == "httpTrigger" and bindings[0]["authLevel"] == "function"
    assert bindings[1] == {"type": "http", "direction": "out", "name": "$return"}
    queue = package_service_bus_queue(ws, [model], inference_config(), input_queue_name="requests",
                                      output_queue_name="predictions")
    _, root = _app_files(ws, queue.location)
    bindings = json.loads((root / APP_DIR / "queue_score/function.json").read_text())["bindings"]
    assert bindings[0] == {"type": "serviceBusTrigger", "direction": "in", "name": "msg", "queueName": "requests",
                           "connection": "ServiceBusConnection"}
    assert bindings[1]["queueName"] == "predictions" and bindings[1]["type"] == "serviceBus"
