"""The HTTP contract of the scoring runtime (Azure inference server routes, headers, errors).

Two live servers per module: the Azure-docs style diabetes ``score.py`` and a variant of it
with the behaviours the error paths need (raise, sleep, print, headers ...).
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid

import pytest
import requests
from aml_runtime_testkit import DIABETES_SCORE, FEATURES_SCORE, SAMPLE

pytestmark = pytest.mark.timeout(120)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIMEOUT_MS = 1000
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def servers(module_server, model_dir):
    diabetes = module_server(DIABETES_SCORE, model_dir)
    features = module_server(
        FEATURES_SCORE,
        model_dir,
        scoring_timeout_ms=TIMEOUT_MS,
        max_body_bytes=MAX_BODY,
        env={
            "SERVICE_PATH_PREFIX": "api/v1",
            "AML_HEADER_TIMEOUT_SECONDS": "1",
            "AML_CORS_ORIGINS": "https://app.example, https://other.example",
        },
    )
    return diabetes.wait_ready(), features.wait_ready()


@pytest.fixture(scope="module")
def diabetes(servers):
    return servers[0]


@pytest.fixture(scope="module")
def features(servers):
    return servers[1]


def post(server, payload, **kwargs):
    return requests.post(f"{server.url}/score", json=payload, timeout=30, **kwargs)


# --- routes ----------------------------------------------------------------------------------


def test_health_route_answers_healthy(diabetes):
    response = requests.get(f"{diabetes.url}/", timeout=10)
    assert response.status_code == 200
    assert response.text == "Healthy"


def test_post_score_returns_the_models_predictions(diabetes, expected_predictions):
    response = post(diabetes, {"data": SAMPLE})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == pytest.approx(expected_predictions)


def test_get_score_parses_query_values_as_json(diabetes, expected_predictions):
    response = requests.get(
        f"{diabetes.url}/score", params={"data": json.dumps(SAMPLE)}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json() == pytest.approx(expected_predictions)


def test_get_score_repeated_key_becomes_a_list(features):
    # run() returns payload["text"]: the query parsed as {"text": [1, "x", [1, 2]]}
    response = requests.get(f"{features.url}/score?text=1&text=x&text=%5B1%2C2%5D", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == [1, "x", [1, 2]]


def test_options_score_is_200(diabetes):
    assert requests.options(f"{diabetes.url}/score", timeout=10).status_code == 200


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_on_score_are_405(diabetes, method):
    response = requests.request(method, f"{diabetes.url}/score", timeout=10)
    assert response.status_code == 405
    assert "not allowed" in response.json()["message"]


def test_routes_also_answer_under_the_service_path_prefix(features, expected_predictions):
    assert requests.get(f"{features.url}/api/v1/", timeout=10).text == "Healthy"
    response = requests.post(f"{features.url}/api/v1/score", json={"data": SAMPLE}, timeout=10)
    assert response.json() == pytest.approx(expected_predictions)
    assert requests.get(f"{features.url}/api/v2/score", timeout=10).status_code == 404


def test_body_at_the_limit_is_accepted(features):
    envelope = len(json.dumps({"text": ""}))
    body = json.dumps({"text": "x" * (MAX_BODY - envelope)})
    assert len(body) == MAX_BODY
    assert requests.post(f"{features.url}/score", data=body, timeout=10).status_code == 200


def test_cors_headers_for_allowed_origins_only(features, expected_predictions):
    preflight = requests.options(
        f"{features.url}/score",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "content-type"
    allowed = post(features, {"data": SAMPLE}, headers={"Origin": "https://other.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://other.example"
    assert allowed.json() == pytest.approx(expected_predictions)
    denied = post(features, {"data": SAMPLE}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in denied.headers
    assert "access-control-allow-origin" not in post(features, {"data": SAMPLE}).headers


def test_unknown_path_is_404(diabetes):
    assert requests.get(f"{diabetes.url}/nope", timeout=10).status_code == 404


def test_swagger_is_404_without_schema_decorators(diabetes):
    response = requests.get(f"{diabetes.url}/swagger.json", timeout=10)
    assert response.status_code == 404
    assert "swagger" in response.json()["message"].lower()


# --- request ids -------------------------------------------------------------------------------


def test_request_id_is_generated_as_uuid4_when_absent(diabetes):
    response = post(diabetes, {"data": SAMPLE})
    request_id = response.headers["x-request-id"]
    assert UUID_RE.match(request_id)
    assert response.headers["x-ms-request-id"] == request_id  # legacy id falls back to it
    assert "x-ms-client-request-id" not in response.headers


def test_request_ids_and_trace_id_are_echoed(diabetes):
    response = post(
        diabetes,
        {"data": SAMPLE},
        headers={"x-request-id": "req-1", "x-ms-client-request-id": "client-1", "TraceId": "t-9"},
    )
    assert response.headers["x-request-id"] == "req-1"
    assert response.headers["x-ms-client-request-id"] == "client-1"
    assert response.headers["x-ms-request-id"] == "client-1"
    assert response.headers["TraceId"] == "t-9"


def test_legacy_request_id_feeds_the_client_id(diabetes):
    response = post(diabetes, {"data": SAMPLE}, headers={"x-ms-request-id": "legacy-7"})
    assert response.headers["x-ms-request-id"] == "legacy-7"
    assert response.headers["x-ms-client-request-id"] == "legacy-7"


@pytest.mark.parametrize("header", ["x-request-id", "x-ms-request-id", "x-ms-client-request-id"])
def test_request_id_longer_than_100_chars_is_431(diabetes, header):
    response = post(diabetes, {"data": SAMPLE}, headers={header: "a" * 101})
    assert response.status_code == 431
    assert "100" in response.json()["message"]
    ok = post(diabetes, {"data": SAMPLE}, headers={header: "a" * 100})
    assert ok.status_code == 200


def _raw_http(server, request: bytes) -> bytes:
    port = server.state()["port"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and b"Healthy" not in data:
                joined = b"".join(chunks)
                head, _, body = joined.partition(b"\r\n\r\n")
                match = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
                if match and len(body) >= int(match.group(1)):
                    break
        return b"".join(chunks)


@pytest.mark.parametrize("value", [b"abc\rX-Injected: 1", b"abc\r\nX-Injected: 1\r"])
def test_cr_lf_in_request_id_is_rejected(diabetes, value):
    body = json.dumps({"data": SAMPLE}).encode()
    request = (
        b"POST /score HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nx-ms-client-request-id: " + value + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    reply = _raw_http(diabetes, request)
    status_line = reply.split(b"\r\n", 1)[0]
    assert b" 400 " in status_line, reply
    assert b"x-injected" not in reply.lower()


def test_connection_without_a_complete_request_is_closed(features):
    port = features.state()["port"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and then nothing
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the server closed it
        assert 0.5 < time.monotonic() - started < 8


def test_exec_time_header_on_scored_responses(diabetes):
    response = post(diabetes, {"data": SAMPLE})
    assert float(response.headers["x-ms-run-fn-exec-ms"]) >= 0
    assert response.headers["x-ms-run-function-failed"] == "False"


# --- input errors --------------------------------------------------------------------------------


def test_invalid_utf8_body_is_400(diabetes):
    response = requests.post(f"{diabetes.url}/score", data=b"\xff\xfe\xfa", timeout=10)
    assert response.status_code == 400
    assert "UTF-8" in response.json()["message"]


def test_deeply_nested_query_value_is_400_and_server_survives(diabetes):
    nested = "[" * 100_000 + "]" * 100_000
    response = requests.get(f"{diabetes.url}/score", params={"data": nested}, timeout=30)
    assert response.status_code == 400
    assert requests.get(f"{diabetes.url}/", timeout=10).status_code == 200


def test_huge_integer_in_query_is_400(diabetes):
    response = requests.get(f"{diabetes.url}/score", params={"data": "9" * 5000}, timeout=10)
    assert response.status_code == 400
    assert "JSON" in response.json()["message"]


def test_body_over_the_limit_is_413(features):
    response = requests.post(f"{features.url}/score", data=b"x" * (MAX_BODY + 1), timeout=10)
    assert response.status_code == 413
    assert str(MAX_BODY) in response.json()["message"]


def test_chunked_body_over_the_limit_is_413(features):
    def chunks():
        for _ in range(20):
            yield b"y" * 8192

    response = requests.post(f"{features.url}/score", data=chunks(), timeout=10)
    assert response.status_code == 413


def test_chunked_body_under_the_limit_is_scored(features, expected_predictions):
    payload = json.dumps({"data": SAMPLE}).encode()

    def chunks():
        yield payload[:10]
        yield payload[10:]

    response = requests.post(f"{features.url}/score", data=chunks(), timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == pytest.approx(expected_predictions)


# --- run() behaviour ---------------------------------------------------------------------------


def test_exception_in_run_is_500_with_message_and_server_stays_up(features):
    response = post(features, {"boom": "kaput"})
    assert response.status_code == 500
    body = response.json()
    assert body["message"].startswith("An unexpected error occurred in scoring script")
    assert "ValueError: boom: kaput" in body["error"]
    assert response.headers["x-ms-run-function-failed"] == "True"
    assert post(features, {"data": SAMPLE}).status_code == 200


def test_scoring_timeout_is_500_and_server_stays_up(features):
    started = time.monotonic()
    response = post(features, {"sleep": 5})
    elapsed = time.monotonic() - started
    assert response.status_code == 500
    assert response.json() == {"message": f"Scoring timeout after {TIMEOUT_MS} ms"}
    assert response.headers["x-ms-run-function-failed"] == "True"
    assert elapsed < 4
    assert post(features, {"data": SAMPLE}).status_code == 200


def test_scoring_timeout_interrupts_a_busy_python_loop(features):
    response = post(features, {"spin": 5})
    assert response.status_code == 500
    assert "Scoring timeout" in response.json()["message"]


def test_string_result_is_json_encoded(features):
    response = post(features, {"text": "hello"})
    assert response.status_code == 200
    assert response.text == '"hello"'


def test_numpy_result_is_serialised(features, expected_predictions):
    response = post(features, {"numpy": SAMPLE})
    assert response.status_code == 200
    assert response.json() == pytest.approx(expected_predictions)


def test_request_headers_argument_receives_the_headers(features):
    response = post(features, {"headers": 1}, headers={"X-Custom-Thing": "yes"})
    headers = response.json()["headers"]
    assert headers["X-Custom-Thing"] == "yes"
    assert headers["Content-Type"] == "application/json"


def test_heap_is_frozen_after_init(features):
    assert post(features, {"gc": 1}).json()["frozen"] > 0


def test_user_output_is_prefixed_with_the_request_id(features):
    request_id = str(uuid.uuid4())
    response = post(features, {"say": "hi"}, headers={"x-request-id": request_id})
    assert response.status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        log = features.log()
        if f"{request_id} | to stderr hi" in log:
            break
        time.sleep(0.05)
    assert f"{request_id} | user says hi" in log
    assert f"{request_id} | to stderr hi" in log
    assert "00000000-0000-0000-0000-000000000000 | features init done" in log


def test_requests_are_logged_with_status_and_time(diabetes):
    response = requests.get(f"{diabetes.url}/score?marker=access-log-test", timeout=10)
    assert response.status_code == 200 or response.status_code == 500
    pattern = re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} I \[\d+\] aml_core\.runtime - "
        rf"GET /score\?marker=access-log-test {response.status_code} [\d.]+ms \d+$",
        re.MULTILINE,
    )
    deadline = time.monotonic() + 5
    while not pattern.search(diabetes.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pattern.search(diabetes.log())


def test_keep_alive_requests_are_not_delayed_by_nagle(diabetes):
    # Without TCP_NODELAY every keep-alive response waits ~40 ms for the delayed ACK.
    with requests.Session() as session:
        session.post(f"{diabetes.url}/score", json={"data": SAMPLE}, timeout=10)
        started = time.monotonic()
        for _ in range(40):
            assert session.post(f"{diabetes.url}/score", json={"data": SAMPLE}, timeout=10).ok
        elapsed = time.monotonic() - started
    assert elapsed < 1.2, f"40 keep-alive requests took {elapsed:.2f} s"
