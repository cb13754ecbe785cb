"""Property-based fuzzing of the emulated Kubernetes API.

schemathesis draws requests from the API server's own OpenAPI v3 documents (every path,
path parameter and query parameter it declares); hypothesis adds what those documents leave
out on purpose (they carry no object schemas): object bodies of every shape, in every
content type the server decodes, for kinds whose objects start no process (no pods or
workloads, whose random commands the kubelet would run). Properties: never a 5xx, an
answer within the timeout, a ``Status`` body with every error, and afterwards the server
still serves reads and writes.
"""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])
#: query parameters that make a request stream until the client leaves: fuzzed apart, bounded
STREAMING = ("watch", "follow")


@pytest.fixture
def session(cluster):
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {cluster.token}"
    s.verify = str(cluster.ca_path)
    s.trust_env = False  # REQUESTS_CA_BUNDLE would replace the cluster's CA on every call
    yield s
    s.close()


_STRATEGIES: dict[tuple[str, str], object] = {}


def _case_strategy(session, cluster, path: str):
    """One strategy over every operation of a group-version's document, built once per
    cluster (schemathesis's pytest plugin needs pytest < 9, so cases are drawn from each
    operation's strategy inside a plain hypothesis test)."""
    key = (cluster.url, path)
    if key not in _STRATEGIES:
        document = session.get(f"{cluster.url}/openapi/v3/{path}", timeout=10)
        assert document.status_code == 200
        operations = [r.ok() for r in schemathesis.openapi.from_dict(document.json()).get_all_operations()]
        _STRATEGIES[key] = st.one_of([op.as_strategy() for op in operations])
    return _STRATEGIES[key]


def _assert_status_body(response) -> None:
    if response.status_code >= 400 and response.request.method != "HEAD":
        body = response.json()
        assert body.get("kind") == "Status" and body.get("code") == response.status_code, response.text[:300]


@pytest.mark.parametrize("group_version", ["api/v1", "apis/apps/v1"])
@given(data=st.data())
@FUZZ
def test_requests_from_the_openapi_documents_never_get_a_5xx(cluster, session, group_version, data):
    case = data.draw(_case_strategy(session, cluster, group_version))
    for name in STREAMING:
        (case.query or {}).pop(name, None)
    response = case.call(base_url=cluster.url, session=session, timeout=10, verify=session.verify)
    case.validate_response(response, checks=[not_a_server_error])
    _assert_status_body(response)
    _still_serves(cluster, session)


_SAFE_KINDS = {  # path → kind: objects that make nothing run
    "/api/v1/namespaces/default/configmaps": "ConfigMap", "/api/v1/namespaces/default/secrets": "Secret",
    "/api/v1/namespaces/default/services": "Service", "/api/v1/namespaces/default/serviceaccounts": "ServiceAccount",
    "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles": "Role", "/api/v1/namespaces": "Namespace"}
_SCALARS = st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=12)
_JSON = st.recursive(_SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3),
                     max_leaves=25)
_NAMES = st.one_of(st.sampled_from(["fuzz", "fuzz-2", "UPPER", "a.b", "-x", "x" * 300, ""]), st.text(max_size=20))


@st.composite
def _objects(draw, kind: str):
    obj = {"apiVersion": draw(st.sampled_from(["v1", "apps/v1", "autoscaling/v2", "rbac.authorization.k8s.io/v1", ""])),
           "kind": draw(st.sampled_from([kind, "Pod", "", "Nonsense"])),
           "metadata": draw(st.one_of(st.fixed_dictionaries({"name": _NAMES},
                                                            optional={"labels": _JSON, "annotations": _JSON,
                                                                      "namespace": _NAMES}), _JSON))}
    for field in draw(st.lists(st.sampled_from(["spec", "data", "stringData", "binaryData", "status", "rules",
                                                "type", "extra"]), max_size=3, unique=True)):
        obj[field] = draw(_JSON)
    return obj


_CONTENT = st.sampled_from(["application/json", "application/merge-patch+json", "application/strategic-merge-patch+json",
                            "application/json-patch+json", "application/apply-patch+yaml", "application/yaml",
                            "text/plain", "application/vnd.kubernetes.protobuf"])


@given(data=st.data())
@FUZZ
def test_any_object_body_never_gets_a_5xx(cluster, session, data):
    path, kind = data.draw(st.sampled_from(sorted(_SAFE_KINDS.items())))
    method = data.draw(st.sampled_from(["POST", "PUT", "PATCH"]))
    target = path if method == "POST" else f"{path}/{data.draw(st.sampled_from(['fuzz', 'default', 'x' * 300]))}"
    query = data.draw(st.sampled_from(["", "?fieldValidation=Strict", "?fieldManager=fuzz&force=true",
                                       "?dryRun=All", "?fieldValidation=Nope", "?fieldManager=fuzz"]))
    body = data.draw(st.one_of(_objects(kind).map(lambda o: json.dumps(o).encode()),
                               st.lists(_JSON, max_size=3).map(lambda o: json.dumps(o).encode()),
                               st.binary(max_size=200),
                               st.integers(1, 100_000).map(lambda d: b"[" * d + b"]" * d)))
    response = session.request(method, cluster.url + target + query, data=body,
                               headers={"Content-Type": data.draw(_CONTENT)}, timeout=10)
    assert response.status_code < 500, (method, target, body[:300], response.status_code, response.text[:300])
    _assert_status_body(response)
    _still_serves(cluster, session)


def _still_serves(cluster, session) -> None:
    """After each example: the server reads and writes (a namespace the fuzzing deleted is
    made again, as it may be)."""
    assert session.get(f"{cluster.url}/version", timeout=10).status_code == 200
    created = session.post(f"{cluster.url}/api/v1/namespaces", timeout=10, json={"metadata": {"name": "liveness"}})
    assert created.status_code in (201, 409), created.text[:300]
