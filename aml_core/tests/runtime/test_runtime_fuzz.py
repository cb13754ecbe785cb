"""Property-based fuzzing of the scoring runtime's HTTP surface, on a real server process.

Two sources of input: schemathesis, generating requests from the service's own swagger
document (``/swagger.json``), and hypothesis strategies for what no document describes
(any method, path, header and body bytes, including malformed JSON, deep nesting and
oversized numbers). The properties: no 5xx for any input, an answer within the request
timeout (no hang), and afterwards the same worker still serves (no crash, no restart).

One 500 is the contract, not a failure: inference-schema checks the input inside the
decorated ``run()``, so input of the wrong type (schemathesis' negative cases) makes the
user's ``run()`` raise, and the Azure server, which we follow, answers that with 500
``An unexpected error occurred in scoring script`` and ``x-ms-run-function-failed: True``.
Any other 5xx fails the test.

Bounded for CI: a few dozen examples per test, no deadline per example (a request over
loopback is fast but its latency is not ours to bound in a property), well under 30 s.
"""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from aml_core.runtime.app import RUN_FAILED_MESSAGE

pytestmark = pytest.mark.timeout(300)

SCHEMA_SCORE = """
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("data", StandardPythonParameterType([[1.0, 2.0]]))
@output_schema(StandardPythonParameterType({"rows": 1}))
def run(data):
    return {"rows": len(data) if isinstance(data, list) else 0}
"""

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


@pytest.fixture(scope="module")
def runtime(module_server, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("fuzz-model")
    server = module_server(SCHEMA_SCORE, model_dir).wait_ready()
    server.first_workers = server.state()["workers"]
    return server


@pytest.fixture(scope="module")
def runtime_openapi(runtime):
    document = requests.get(f"{runtime.url}/swagger.json", timeout=10)
    assert document.status_code == 200, document.text
    return schemathesis.openapi.from_dict(document.json())


def _not_a_server_failure(response) -> None:
    """``response``: schemathesis' (headers map to lists of values) or requests'."""
    if response.status_code < 500:
        return
    flag = response.headers.get("x-ms-run-function-failed")
    flag = flag[0] if isinstance(flag, list) and flag else flag
    run_failed = response.status_code == 500 and flag == "True" and response.json().get("message") == RUN_FAILED_MESSAGE
    assert run_failed, (response.request.method, response.request.url, response.request.body,
                        response.status_code, dict(response.headers), response.text[:300])


def _still_serving(server) -> None:
    assert requests.get(f"{server.url}/", timeout=10).status_code == 200
    state = server.state()
    assert state["restarts"] == 0 and state["workers"] == server.first_workers, state


def operations(schema) -> list:
    """Every operation of a schemathesis schema (its pytest plugin needs pytest < 9, so the
    cases are drawn from each operation's strategy inside a plain hypothesis test)."""
    found = [result.ok() for result in schema.get_all_operations()]
    assert found, "the document describes no operation"
    return found


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode))  # valid inputs, and inputs that break it
@given(data=st.data())
@FUZZ
def test_requests_from_the_swagger_document_never_get_a_5xx(runtime, runtime_openapi, mode, data):
    operation = data.draw(st.sampled_from(operations(runtime_openapi)))
    case = data.draw(operation.as_strategy(generation_mode=mode))
    _not_a_server_failure(case.call(base_url=runtime.url, timeout=10))


_METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
_PATHS = st.sampled_from(["/", "/score", "/swagger.json", "/swagger.json?version=3", "/score?verbose=true",
                          "/%2e%2e/etc/passwd", "/score/../score", "/nope", "//score"])
_JSONISH = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
                        lambda children: st.lists(children, max_size=4)
                        | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=20)
_BODIES = st.one_of(
    st.binary(max_size=512),
    _JSONISH.map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=200_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(min_value=4300, max_value=20_000).map(lambda digits: b'{"data": ' + b"9" * digits + b"}"),
    st.just(b'{"data": [[1.0, 2.0]]'),  # truncated
)
# requests itself refuses values with leading or trailing whitespace: strip them
_HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120).map(str.strip)
_HEADERS = st.dictionaries(
    st.sampled_from(["Content-Type", "Accept", "x-ms-request-id", "x-ms-client-request-id", "Authorization",
                     "Content-Encoding", "Transfer-Encoding-Hint", "Expect-Hint"]),
    _HEADER_VALUES, max_size=4)


@given(method=_METHODS, path=_PATHS, headers=_HEADERS, body=_BODIES)
@FUZZ
def test_any_method_path_header_and_body_never_get_a_5xx(runtime, method, path, headers, body):
    response = requests.request(method, runtime.url + path, headers=headers,
                                data=body if method not in ("GET", "HEAD") else None, timeout=10)
    assert response.status_code < 500, (method, path, headers, body[:200], response.status_code, response.text[:300])


def test_after_the_fuzzing_the_same_worker_still_serves(runtime):
    # runs after the two above in file order; on its own it checks a fresh server
    response = requests.post(f"{runtime.url}/score", json={"data": [[1.0, 2.0], [3.0, 4.0]]}, timeout=10)
    assert response.status_code == 200 and response.json() == {"rows": 2}
    _still_serving(runtime)
