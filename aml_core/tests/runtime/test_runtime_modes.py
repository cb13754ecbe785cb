"""Raw-request mode (``@rawhttp``, unmodified Azure imports) and inference-schema scripts."""

from __future__ import annotations

import json
import sys

import pytest
import requests
from aml_runtime_testkit import SAMPLE

pytestmark = pytest.mark.timeout(120)

# Written for Azure: imports from azureml.contrib.services, which is not installed here.
RAW_SCORE = """
import json

from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request):
    if request.method == "GET":
        return AMLResponse(request.full_path.encode("utf-8"), 200)
    if request.method == "POST":
        if request.args.get("mode") == "form":
            upload = request.files["image"]
            return AMLResponse(
                json.dumps({"name": upload.filename, "size": len(upload.read()),
                            "label": request.form["label"]}),
                200, {"Content-Type": "application/json"}, )
        if request.args.get("mode") == "fail":
            return AMLResponse("downstream broke", 503)
        data = request.get_data(False)
        return AMLResponse(
            data[::-1], 201,
            {"Content-Type": "application/octet-stream", "X-Length": str(len(data)),
             "X-Method": request.method,
             "X-Agent": request.headers.get("user-agent", "")},
        )
    return AMLResponse("bad request", 500)
"""

SCHEMA_SCORE = """
import os

import joblib
import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import (
    StandardPythonParameterType,
)
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.pkl"))


@input_schema("data", NumpyParameterType(np.array([[0.1] * 10])))
@input_schema("scale", StandardPythonParameterType(1.0))
@output_schema(StandardPythonParameterType([100.0]))
def run(data, scale=1.0):
    return (model.predict(data) * scale).tolist()
"""


@pytest.fixture(scope="module")
def servers(module_server, model_dir):
    raw = module_server(RAW_SCORE, model_dir)
    schema = module_server(SCHEMA_SCORE, model_dir)
    return raw.wait_ready(), schema.wait_ready()


@pytest.fixture(scope="module")
def raw(servers):
    return servers[0]


@pytest.fixture(scope="module")
def schema(servers):
    return servers[1]


# --- raw mode -----------------------------------------------------------------------------------


def test_raw_post_gets_the_body_bytes_and_sets_status_and_headers(raw):
    payload = bytes(range(256)) * 4  # not UTF-8: raw mode must not decode it
    response = requests.post(f"{raw.url}/score", data=payload, timeout=10)
    assert response.status_code == 201
    assert response.content == payload[::-1]
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["X-Length"] == str(len(payload))
    assert response.headers["X-Method"] == "POST"
    assert response.headers["X-Agent"].startswith("python-requests")
    assert response.headers["x-ms-run-function-failed"] == "False"
    assert "x-ms-run-fn-exec-ms" in response.headers


def test_raw_get_sees_path_and_query(raw):
    response = requests.get(f"{raw.url}/score?a=1&b=two", timeout=10)
    assert response.status_code == 200
    assert response.text == "/score?a=1&b=two"


def test_raw_multipart_upload_is_parsed(raw):
    response = requests.post(
        f"{raw.url}/score?mode=form",
        files={"image": ("cat.png", b"\x89PNG" + b"\x00" * 100, "image/png")},
        data={"label": "cat"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "cat.png", "size": 104, "label": "cat"}


def test_raw_response_of_5xx_marks_the_run_failed(raw):
    response = requests.post(f"{raw.url}/score?mode=fail", data=b"x", timeout=10)
    assert response.status_code == 503
    assert response.text == "downstream broke"
    assert response.headers["x-ms-run-function-failed"] == "True"


def test_azureml_aliases_exist_only_in_the_runtime_process(raw):
    # the server imported azureml.contrib.services above; this test process never did
    assert "azureml.contrib.services.aml_request" not in sys.modules


def test_raw_api_is_exported_from_aml_core_runtime():
    from aml_core.runtime import AMLRequest, AMLResponse, rawhttp

    def run(request):
        return request

    assert rawhttp(run) is run
    response = AMLResponse({"a": 1}, 202, json_str=True)
    assert response.status_code == 202
    assert json.loads(response.body) == {"a": 1}
    assert ("Content-Type", "application/json") in response.headers
    assert AMLRequest.__name__ == "AMLRequest"


def test_aml_response_splits_comma_separated_header_values():
    from aml_core.runtime import AMLResponse

    response = AMLResponse("x", 200, {"Vary": "Accept, Origin"})
    assert ("Vary", "Accept") in response.headers
    assert ("Vary", "Origin") in response.headers


# --- inference-schema ---------------------------------------------------------------------------


def test_schema_post_passes_named_arguments(schema, expected_predictions):
    response = requests.post(f"{schema.url}/score", json={"data": SAMPLE, "scale": 2}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == pytest.approx([2 * p for p in expected_predictions])


def test_schema_default_argument_applies(schema, expected_predictions):
    response = requests.post(f"{schema.url}/score", json={"data": SAMPLE}, timeout=10)
    assert response.json() == pytest.approx(expected_predictions)


def test_schema_requires_json_content_type(schema):
    response = requests.post(
        f"{schema.url}/score",
        data=json.dumps({"data": SAMPLE}),
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert response.status_code == 415


@pytest.mark.parametrize(
    "body, fragment",
    [("[1, 2]", "dictionary"), ("{not json", "could not be decoded"), ('{"scale": 1}', "'data'")],
)
def test_schema_bad_bodies_are_400(schema, body, fragment):
    response = requests.post(
        f"{schema.url}/score", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 400
    assert fragment in response.json()["message"]


def test_schema_deeply_nested_body_is_400(schema):
    body = '{"data": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = requests.post(
        f"{schema.url}/score", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 400
    assert requests.get(f"{schema.url}/", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "query, key, expected",
    [("", "swagger", "2.0"), ("?version=2", "swagger", "2.0"), ("?version=3", "openapi", "3.0.3")],
)
def test_swagger_is_generated_from_the_schema(schema, query, key, expected):
    response = requests.get(f"{schema.url}/swagger.json{query}", timeout=10)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document[key] == expected
    schemas = document["definitions"] if key == "swagger" else document["components"]["schemas"]
    service_input = schemas["ServiceInput"]
    assert set(service_input["properties"]) == {"data", "scale"}
    assert service_input["properties"]["data"]["type"] == "array"
    assert schemas["ServiceOutput"]["type"] == "array"
    assert "/score" in document["paths"]


def test_swagger_unknown_version_is_404(schema):
    response = requests.get(f"{schema.url}/swagger.json?version=9", timeout=10)
    assert response.status_code == 404
    assert "not valid" in response.json()["message"]
