"""The admin API: auth, validation, stored entries, delete, list."""

from __future__ import annotations

import hmac

import pytest
import requests
from aml_core.frontdoor import ServiceEntry
from frontdoor_testkit import plain


def test_admin_calls_need_the_admin_token(frontdoor):
    url = f"{frontdoor.url}/-/services"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": frontdoor.token}, timeout=5).status_code == 401
    resp = requests.put(f"{url}/svc", json=plain("svc", []), headers={"Authorization": "Bearer x"}, timeout=5)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "Unauthorized"
    assert requests.get(f"{frontdoor.url}/-/metrics", timeout=5).status_code == 401
    ok = requests.get(url, headers=frontdoor.admin, timeout=5)
    assert ok.status_code == 200 and ok.json() == {"services": []}


def test_admin_token_is_compared_in_constant_time(frontdoor, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    requests.get(f"{frontdoor.url}/-/services", headers={"Authorization": "Bearer guess"}, timeout=5)
    assert any(b == frontdoor.token.encode() for _, b in calls)


@pytest.mark.parametrize("body, message", [
    ({"auth": "none", "versions": {f"v{i}": {"backends": [], "is_default": i == 0} for i in range(7)}}, "at most 6 versions"),
    ({"auth": "none", "versions": {"a": {"backends": [], "traffic_percentile": 60, "is_default": True},
                                   "b": {"backends": [], "traffic_percentile": 50}}}, "sum to 110"),
    ({"auth": "none", "versions": {"a": {"backends": []}, "b": {"backends": []}}}, "exactly one version must be the default, got 0"),
    ({"auth": "none", "versions": {"a": {"backends": [], "is_default": True},
                                   "b": {"backends": [], "is_default": True}}}, "got 2"),
    ({"auth": "none", "versions": {"a": {"backends": [], "traffic_percentile": 101, "is_default": True}}}, "0-100"),
    ({"auth": "none", "versions": {"a": {"backends": [], "traffic_percentile": -1, "is_default": True}}}, "0-100"),
    ({"auth": "basic", "versions": {"a": {"backends": [], "is_default": True}}}, "auth must be one of"),
    ({"auth": "key", "versions": {"a": {"backends": [], "is_default": True}}}, "needs keys"),
    ({"auth": "none", "versions": {}}, "non-empty"),
    ({"auth": "none", "max_queue_wait_ms": 0, "versions": {"a": {"backends": [], "is_default": True}}}, "max_queue_wait_ms"),
    ({"auth": "none", "versions": {"a": {"backends": ["ftp://x"], "is_default": True}}}, "base URL"),
])
def test_invalid_entries_are_refused_with_a_clear_message(frontdoor, body, message):
    resp = frontdoor.put("svc", body)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "InvalidConfig"
    assert message in resp.json()["error"]["message"]
    assert frontdoor.http.get(f"{frontdoor.url}/-/services", headers=frontdoor.admin).json() == {"services": []}


def test_a_body_that_is_not_json_is_a_400(frontdoor):
    resp = frontdoor.http.put(f"{frontdoor.url}/-/services/svc", data=b"{nope", headers=frontdoor.admin)
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]["message"]


def test_a_deeply_nested_body_is_a_400_not_a_500(frontdoor):
    deep = b"[" * 100_000 + b"]" * 100_000
    resp = frontdoor.http.put(f"{frontdoor.url}/-/services/svc", data=deep, headers=frontdoor.admin)
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]["message"]


def test_put_stores_the_entry_with_keys_masked_and_applies_aks_defaults(frontdoor):
    stored = frontdoor.put_ok("svc", {"auth": "key", "keys": {"primary": "canary-primary-1",
                                                              "secondary": "canary-secondary-2"},
                                      "versions": {"svc": {"backends": ["http://127.0.0.1:1/"],
                                                           "traffic_percentile": None, "is_default": True}}})
    assert stored["keys"] == {"primary": "****", "secondary": "****"}
    assert stored["scoring_timeout_ms"] == 60000
    assert stored["max_concurrent_requests_per_replica"] == 1
    assert stored["max_queue_wait_ms"] == 500
    assert stored["versions"]["svc"]["backends"] == ["http://127.0.0.1:1"]
    got = frontdoor.http.get(f"{frontdoor.url}/-/services/svc", headers=frontdoor.admin)
    assert got.json() == stored
    assert "canary" not in repr(frontdoor.app) + repr(frontdoor.app._services["svc"].entry)


def test_entry_repr_hides_keys():
    entry = ServiceEntry.from_payload("svc", {"auth": "key", "keys": {"primary": "canary-p", "secondary": "canary-s"},
                                              "versions": {"svc": {"backends": [], "is_default": True}}})
    assert "canary" not in repr(entry) and "canary" not in str(entry.to_dict())


def test_delete_and_list(frontdoor):
    frontdoor.put_ok("a", plain("a", []))
    frontdoor.put_ok("b", plain("b", []))
    assert frontdoor.http.get(f"{frontdoor.url}/-/services", headers=frontdoor.admin).json() == {"services": ["a", "b"]}
    assert frontdoor.http.delete(f"{frontdoor.url}/-/services/a", headers=frontdoor.admin).status_code == 204
    assert frontdoor.http.delete(f"{frontdoor.url}/-/services/a", headers=frontdoor.admin).status_code == 404
    assert frontdoor.http.get(f"{frontdoor.url}/-/services", headers=frontdoor.admin).json() == {"services": ["b"]}
    assert frontdoor.score("a").status_code == 404


def test_health_and_unknown_routes(frontdoor):
    assert requests.get(frontdoor.url + "/", timeout=5).status_code == 200
    assert requests.get(frontdoor.url + "/nope", timeout=5).status_code == 404
    assert frontdoor.score("missing").status_code == 404
