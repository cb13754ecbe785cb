"""``package`` and its per-trigger helpers: a model, its ``score.py`` and its Environment as an
image holding an Azure Functions app (``azureml.contrib.functions``).

The image is the core's scoring image (models, app, runtime, the environment's packages) plus
one layer with the function app in the layout the Functions host reads, at
:data:`APP_DIR` under the image's root (``AzureWebJobsScriptRoot``)::

    host.json
    <function>/function.json     the trigger and output bindings
    <function>/__init__.py       main(), written against azure-functions' types

and an entrypoint that starts :mod:`aml_provider_functions.host` (copied into the image with
the core's runtime) instead of the scoring server. Each ``main()`` hands its input to
``score.py``'s ``run()`` (``init()`` runs once, on the first event) and binds the result.

Connection settings follow the documents: the blob trigger and output read the storage
connection string from the app setting ``TriggerConnectionString``, the queue trigger and
output the Service Bus connection string from ``ServiceBusConnection``; the host's own storage
(receipts, poison queue) is ``AzureWebJobsStorage``.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path
from typing import Any

from aml_core.environment import Environment, default_environment
from aml_core.errors import InvalidConfig
from aml_core.inference import InferenceConfig
from aml_core.oci import LayerBuilder
from aml_core.oci.image import (APP_ROOT, LABEL_APP_LAYERS, LABEL_PATH_ENV, LABEL_PORT, OCI_LAYER_GZIP,
                                RUNTIME_LIB, Image)

HTTP_TRIGGER = "http"
BLOB_TRIGGER = "blob"
SERVICE_BUS_QUEUE_TRIGGER = "service_bus_queue"
TRIGGERS = [HTTP_TRIGGER, BLOB_TRIGGER, SERVICE_BUS_QUEUE_TRIGGER]
#: each trigger's own keyword arguments (besides the common ones of Model.package)
TRIGGER_OPTIONS = {HTTP_TRIGGER: ["auth_level"], BLOB_TRIGGER: ["input_path", "output_path"],
                   SERVICE_BUS_QUEUE_TRIGGER: ["input_queue_name", "output_queue_name"]}
AUTH_LEVELS = ["anonymous", "function", "admin"]
#: where the Functions host of the official Linux images looks for the app, relative to the
#: image's root (as layers hold paths); ``SCRIPT_ROOT`` is that folder seen from inside
APP_DIR = "home/site/wwwroot"
SCRIPT_ROOT = posixpath.join("/", APP_DIR)
#: app settings holding the trigger's connection string (names from the documents' flow)
STORAGE_CONNECTION = "TriggerConnectionString"
SERVICE_BUS_CONNECTION = "ServiceBusConnection"
#: the port the host listens on when the engine sets none (the Functions images' 80)
HOST_PORT = 80
#: what the host needs in the image, on top of the user's environment
HOST_REQUIREMENTS = ("azure-functions>=1.17", "azure-storage-blob>=12.19", "azure-storage-queue>=12.9",
                     "azure-servicebus>=7.11")
HOST_ENTRYPOINT = ["/bin/sh", "-c",
                   f'exec python3 -m aml_provider_functions.host --host "${{AML_HOST:-0.0.0.0}}" '
                   f'--port "${{AML_PORT:-{HOST_PORT}}}"']
#: the function's name in the app (one function per package, named after its trigger)
FUNCTION_NAMES = {HTTP_TRIGGER: "score", BLOB_TRIGGER: "blob_score", SERVICE_BUS_QUEUE_TRIGGER: "queue_score"}
FUNCTIONS_LABEL = "org.aml.functions.functions"
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,259}$")
_BLOB_PATH = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}/.+$")


def _check_blob_path(option: str, value: Any) -> str:
    if not isinstance(value, str) or not _BLOB_PATH.match(value):
        raise InvalidConfig(f"Invalid {option} {value!r}: give '<container>/<blob name pattern>', e.g. "
                            f"'input/{{blobname}}.json' (a container name is 3-63 lowercase letters, digits "
                            f"and single hyphens).")
    return value


def _tokens(path: str) -> set[str]:
    return set(re.findall(r"\{([^{}]+)\}", path))


def trigger_options(trigger: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The trigger's checked options, with their defaults; raises the reference's texts."""
    if trigger not in TRIGGERS:
        raise InvalidConfig(f"Invalid trigger {trigger}, valid options are {TRIGGERS}")
    unknown = [name for name in options if name not in TRIGGER_OPTIONS[trigger]]
    if unknown:
        raise InvalidConfig(f"Invalid option {unknown[0]} for trigger {trigger}, valid options are "
                            f"{TRIGGER_OPTIONS[trigger]}")
    if trigger == HTTP_TRIGGER:
        level = options.get("auth_level") or "anonymous"
        if level not in AUTH_LEVELS:
            raise InvalidConfig(f"Invalid auth_level {level}, valid options are {AUTH_LEVELS}")
        return {"auth_level": level}
    if trigger == BLOB_TRIGGER:
        for name in ("input_path", "output_path"):
            if options.get(name) is None:
                raise InvalidConfig(f"The blob trigger needs {name}, e.g. input_path='input/{{blobname}}.json', "
                                    f"output_path='output/{{blobname}}_out.json'.")
        source, target = _check_blob_path("input_path", options["input_path"]), \
            _check_blob_path("output_path", options["output_path"])
        missing = _tokens(target) - _tokens(source)
        if missing:
            raise InvalidConfig(f"Invalid output_path {target!r}: it uses {sorted(missing)}, which input_path "
                                f"{source!r} does not define; use only the tokens of input_path.")
        if source.split("/", 1)[0] == target.split("/", 1)[0]:
            raise InvalidConfig(f"Invalid output_path {target!r}: it is in the input container, so each output "
                                f"would trigger the function again; use another container.")
        return {"input_path": source, "output_path": target}
    for name in ("input_queue_name", "output_queue_name"):
        value = options.get(name)
        if value is None:
            raise InvalidConfig(f"The Service Bus queue trigger needs {name}.")
        if not isinstance(value, str) or not _QUEUE_NAME.match(value):
            raise InvalidConfig(f"Invalid {name} {value!r}: a queue name is 1-260 letters, digits, '.', '_', "
                                f"'-' and '/', starting with a letter or digit.")
    if options["input_queue_name"] == options["output_queue_name"]:
        raise InvalidConfig("input_queue_name and output_queue_name are the same queue, so each result would "
                            "trigger the function again; use two queues.")
    return {"input_queue_name": options["input_queue_name"], "output_queue_name": options["output_queue_name"]}


def deployed_api_options(trigger: str, options: dict[str, Any]) -> dict[str, Any]:
    """The ``deployedApiOptions`` payload of the reference (b8), kept as the image's label."""
    if trigger == HTTP_TRIGGER:
        return {"flavor": "functionsApp", "trigger": "Http", "authLevel": options["auth_level"]}
    if trigger == BLOB_TRIGGER:
        return {"flavor": "functionsApp", "trigger": "Blob", "inPath": options["input_path"],
                "outPath": options["output_path"]}
    return {"flavor": "functionsApp", "trigger": "ServiceBusQueue", "inQueueName": options["input_queue_name"],
            "outQueueName": options["output_queue_name"]}


# -- the function app's files ---------------------------------------------------------------------


def host_json() -> dict[str, Any]:
    return {"version": "2.0", "extensions": {"http": {"routePrefix": "api"},
                                             "serviceBus": {"autoCompleteMessages": True,
                                                            "maxAutoLockRenewalDuration": "00:05:00"}},
            "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"},
            "functionTimeout": "00:10:00"}


def function_json(trigger: str, options: dict[str, Any]) -> dict[str, Any]:
    if trigger == HTTP_TRIGGER:
        bindings = [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": options["auth_level"],
                     "methods": ["get", "post"]},
                    {"type": "http", "direction": "out", "name": "$return"}]
    elif trigger == BLOB_TRIGGER:
        bindings = [{"type": "blobTrigger", "direction": "in", "name": "blobin", "path": options["input_path"],
                     "connection": STORAGE_CONNECTION, "dataType": "binary"},
                    {"type": "blob", "direction": "out", "name": "blobout", "path": options["output_path"],
                     "connection": STORAGE_CONNECTION}]
    else:
        bindings = [{"type": "serviceBusTrigger", "direction": "in", "name": "msg",
                     "queueName": options["input_queue_name"], "connection": SERVICE_BUS_CONNECTION},
                    {"type": "serviceBus", "direction": "out", "name": "msgout",
                     "queueName": options["output_queue_name"], "connection": SERVICE_BUS_CONNECTION}]
    return {"scriptFile": "__init__.py", "entryPoint": "main", "bindings": bindings}


_ENTRY_POINTS = {
    HTTP_TRIGGER: '''\
"""HTTP trigger: the request body (or query) goes to score.py's run(); its result is the response."""
import json

import azure.functions as func

from aml_provider_functions.host.scoring import ScoringFailed, load, score_http

load()  # score.py's init() runs as the host loads this function, before the first request


def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        status, body = score_http(req.method, req.get_body(), dict(req.params), dict(req.headers))
    except ScoringFailed as exc:
        return func.HttpResponse(json.dumps({"message": str(exc)}), status_code=exc.status,
                                 mimetype="application/json")
    return func.HttpResponse(body, status_code=status, mimetype="application/json")
''',
    BLOB_TRIGGER: '''\
"""Blob trigger: each new blob's content goes to score.py's run(); its result is the output blob."""
import logging

import azure.functions as func

from aml_provider_functions.host.scoring import load, score_text

load()  # score.py's init() runs as the host loads this function, before the first blob


def main(blobin: func.InputStream, blobout: func.Out[str]) -> None:
    logging.info("Scoring blob %s (%s bytes)", blobin.name, blobin.length)
    blobout.set(score_text(blobin.read()))
''',
    SERVICE_BUS_QUEUE_TRIGGER: '''\
"""Service Bus queue trigger: each message's body goes to score.py's run(); its result is sent
to the output queue."""
import logging

import azure.functions as func

from aml_provider_functions.host.scoring import load, score_text

load()  # score.py's init() runs as the host loads this function, before the first message


def main(msg: func.ServiceBusMessage, msgout: func.Out[str]) -> None:
    logging.info("Scoring message %s (delivery %s)", msg.message_id, msg.delivery_count)
    msgout.set(score_text(msg.get_body()))
''',
}


def function_app_files(trigger: str, options: dict[str, Any]) -> dict[str, bytes]:
    """``relative path -> content`` of the function app (under the script root)."""
    name = FUNCTION_NAMES[trigger]
    dump = lambda doc: (json.dumps(doc, indent=2) + "\n").encode()  # noqa: E731
    return {"host.json": dump(host_json()), f"{name}/function.json": dump(function_json(trigger, options)),
            f"{name}/__init__.py": _ENTRY_POINTS[trigger].encode()}


def _provider_source() -> Path:
    import aml_provider_functions

    return Path(aml_provider_functions.__file__).parent


def add_function_app(image: Image, trigger: str, options: dict[str, Any]) -> Image:
    """``image`` (a scoring image) with the function app layer on top and the host as its
    entrypoint. The host's package is copied whole: it is small, and the app's ``main()``s
    import from it."""
    builder = LayerBuilder()
    for rel, content in sorted(function_app_files(trigger, options).items()):
        builder.add_bytes(posixpath.join(SCRIPT_ROOT, rel), content)
    builder.add_tree(f"{RUNTIME_LIB}/aml_provider_functions", _provider_source())
    layer = builder.build(comment=f"function app ({trigger} trigger) and its host", media_type=OCI_LAYER_GZIP)
    config = image.config_json()
    inner = config["config"]
    labels = dict(inner.get("Labels") or {})
    labels[LABEL_APP_LAYERS] = str(int(labels.get(LABEL_APP_LAYERS, "0")) + 1)
    labels[LABEL_PATH_ENV] = ",".join(filter(None, [labels.get(LABEL_PATH_ENV, ""), "AzureWebJobsScriptRoot"]))
    labels[LABEL_PORT] = str(HOST_PORT)
    labels["org.aml.functions.deployed-api-options"] = json.dumps(deployed_api_options(trigger, options))
    # the platform learns the app's functions from this (the real one asks the host: sync triggers)
    labels[FUNCTIONS_LABEL] = json.dumps([FUNCTION_NAMES[trigger]])
    env = [item for item in inner.get("Env") or [] if not item.startswith("AzureWebJobsScriptRoot=")]
    env += [f"AzureWebJobsScriptRoot={SCRIPT_ROOT}", "FUNCTIONS_WORKER_RUNTIME=python",
            "FUNCTIONS_EXTENSION_VERSION=~4"]
    config["config"] = {**inner, "Env": env, "Entrypoint": HOST_ENTRYPOINT, "Cmd": [],
                        "ExposedPorts": {f"{HOST_PORT}/tcp": {}}, "Labels": dict(sorted(labels.items()))}
    config["rootfs"] = {"type": "layers", "diff_ids": [*config["rootfs"]["diff_ids"], layer.diff_id]}
    config["history"] = [*config.get("history", []),
                         {"created": config.get("created"), "created_by": "aml_provider_functions",
                          "comment": layer.comment}]
    return Image.assemble(config, [*image.layers, layer.blob])


# -- the public functions ---------------------------------------------------------------------------


def _with_host_packages(inference_config: InferenceConfig) -> InferenceConfig:
    """The user's inference config whose environment also installs the host's packages."""
    environment = Environment.from_dict(inference_config.environment.to_dict())
    have = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in
            environment.python.conda_dependencies.pip_requirements()}
    for requirement in HOST_REQUIREMENTS:
        if re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower() not in have:
            environment.python.conda_dependencies.add_pip_package(requirement)
    return InferenceConfig(entry_script=inference_config.entry_script,
                           source_directory=inference_config.source_directory, environment=environment,
                           description=inference_config.description)


def package(workspace, models, inference_config, generate_dockerfile=False, functions_enabled=False,
            trigger=None, image_name=None, image_label=None, **kwargs):
    """Package ``models`` with ``inference_config`` as a function app image (``trigger`` is
    :data:`HTTP_TRIGGER`, :data:`BLOB_TRIGGER` or :data:`SERVICE_BUS_QUEUE_TRIGGER`, with its
    options as keyword arguments). Returns the core's ``ModelPackage``: ``.location`` is the
    image in the workspace's registry, ``wait_for_creation()`` as in the documents."""
    from aml_core.images import ModelPackage, build_and_store
    from aml_core.model import model_record

    if not functions_enabled:
        raise InvalidConfig("package() of azureml.contrib.functions builds function apps only: pass "
                            "functions_enabled=True (Model.package builds a plain scoring image).")
    options = trigger_options(trigger, kwargs)
    if inference_config is None or inference_config.environment is None or \
            inference_config.environment == default_environment():
        raise InvalidConfig("Packaging for Azure Functions needs an InferenceConfig with an Environment: "
                            "InferenceConfig(entry_script='score.py', environment=myenv).")
    if generate_dockerfile:
        raise InvalidConfig("generate_dockerfile=True is not supported for function apps: the function app "
                            "layer is added to the built image. Leave it False.")
    config = _with_host_packages(inference_config)
    record = build_and_store(workspace, [model_record(m) for m in models], config, image_name or "package",
                             image_label, finish=lambda image: add_function_app(image, trigger, options))
    return ModelPackage._from_record(workspace, record)


def package_http(workspace, models, inference_config, generate_dockerfile=False, auth_level=None, **kwargs):
    """A function app with an HTTP trigger (``auth_level``: anonymous, function or admin)."""
    return package(workspace, models, inference_config, generate_dockerfile, functions_enabled=True,
                   trigger=HTTP_TRIGGER, auth_level=auth_level, **kwargs)


def package_blob(workspace, models, inference_config, generate_dockerfile=False, input_path=None,
                 output_path=None, **kwargs):
    """A function app with a blob trigger on ``input_path`` writing ``output_path``."""
    return package(workspace, models, inference_config, generate_dockerfile, functions_enabled=True,
                   trigger=BLOB_TRIGGER, input_path=input_path, output_path=output_path, **kwargs)


def package_service_bus_queue(workspace, models, inference_config, generate_dockerfile=False,
                              input_queue_name=None, output_queue_name=None, **kwargs):
    """A function app with a Service Bus queue trigger reading ``input_queue_name`` and sending
    each result to ``output_queue_name``."""
    return package(workspace, models, inference_config, generate_dockerfile, functions_enabled=True,
                   trigger=SERVICE_BUS_QUEUE_TRIGGER, input_queue_name=input_queue_name,
                   output_queue_name=output_queue_name, **kwargs)
