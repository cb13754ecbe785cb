"""Key and token auth on the scoring route (S1-S3)."""

from __future__ import annotations

import hmac

import requests


def keyed(backend_url: str, primary: str = "key-one", secondary: str = "key-two") -> dict:
    return {"auth": "key", "keys": {"primary": primary, "secondary": secondary},
            "versions": {"svc": {"backends": [backend_url], "traffic_percentile": 100, "is_default": True}}}


def test_both_keys_work_and_wrong_or_missing_keys_never_reach_the_replica(frontdoor, backends):
    backend, url = backends("b")
    frontdoor.put_ok("svc", keyed(url))
    assert frontdoor.score("svc", "key-one", json={"x": 1}).status_code == 200
    assert frontdoor.score("svc", "key-two", json={"x": 1}).status_code == 200
    assert backend.calls == 2
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "key-one"},
                    {"Authorization": "Basic key-one"}, {"Authorization": "Bearer "}):
        resp = frontdoor.score("svc", headers=headers, json={})
        assert resp.status_code == 401, headers
        assert resp.json()["error"]["code"] == "Unauthorized"
    assert backend.calls == 2
    # the key is not handed to user code in the replica
    assert backend.seen_auth == [None, None]


def test_a_replaced_key_stops_working_at_once(frontdoor, backends):
    _, url = backends("b")
    frontdoor.put_ok("svc", keyed(url))
    frontdoor.put_ok("svc", keyed(url, primary="key-three"))  # regen_key('Primary')
    assert frontdoor.score("svc", "key-one").status_code == 401
    assert frontdoor.score("svc", "key-three").status_code == 200
    assert frontdoor.score("svc", "key-two").status_code == 200


def test_keys_are_compared_in_constant_time(frontdoor, backends, monkeypatch):
    _, url = backends("b")
    frontdoor.put_ok("svc", keyed(url))
    seen = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: seen.append(b) or real(a, b))
    frontdoor.score("svc", "guess")
    assert b"key-one" in seen and b"key-two" in seen


def tokened(url: str) -> dict:
    return {"auth": "token", "versions": {"x": {"backends": [url], "is_default": True}}}


def get_token(frontdoor, name: str) -> dict:
    resp = frontdoor.http.post(f"{frontdoor.url}/-/services/{name}/token", headers=frontdoor.admin)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_token_auth_valid_then_expired(frontdoor, backends, clock):
    _, url = backends("b")
    frontdoor.put_ok("svc", tokened(url))
    token = get_token(frontdoor, "svc")
    assert set(token) == {"accessToken", "refreshAfter", "expiryOn", "tokenType"}
    assert token["tokenType"] == "Bearer"
    # the fixture sets refresh after 60 s and 120 s of validity beyond it
    assert token["refreshAfter"] - 60 <= token["expiryOn"] - 180 <= token["refreshAfter"] - 59
    assert frontdoor.score("svc", token["accessToken"]).status_code == 200
    clock.now += 150  # past refreshAfter, still valid
    assert frontdoor.score("svc", token["accessToken"]).status_code == 200
    clock.now += 40  # past expiryOn
    resp = frontdoor.score("svc", token["accessToken"])
    assert resp.status_code == 401 and "expired" in resp.json()["error"]["message"]
    assert frontdoor.score("svc", get_token(frontdoor, "svc")["accessToken"]).status_code == 200


def test_a_token_for_one_service_is_refused_by_another(frontdoor, backends):
    _, url = backends("b")
    frontdoor.put_ok("a", tokened(url))
    frontdoor.put_ok("b", tokened(url))
    token_a = get_token(frontdoor, "a")["accessToken"]
    assert frontdoor.score("a", token_a).status_code == 200
    assert frontdoor.score("b", token_a).status_code == 401
    assert frontdoor.score("b", token_a[:-4] + "AAAA").status_code == 401


def test_keys_do_not_work_on_a_token_service_and_tokens_need_admin(frontdoor, backends):
    _, url = backends("b")
    body = tokened(url)
    body["keys"] = {"primary": "key-one", "secondary": "key-two"}
    frontdoor.put_ok("svc", body)
    assert frontdoor.score("svc", "key-one").status_code == 401
    assert requests.post(f"{frontdoor.url}/-/services/svc/token", timeout=5).status_code == 401
    frontdoor.put_ok("plain", keyed(url))
    resp = frontdoor.http.post(f"{frontdoor.url}/-/services/plain/token", headers=frontdoor.admin)
    assert resp.status_code == 400 and "token auth is not enabled" in resp.json()["error"]["message"]


def test_a_deleted_and_recreated_service_invalidates_old_tokens(frontdoor, backends):
    _, url = backends("b")
    frontdoor.put_ok("svc", tokened(url))
    old = get_token(frontdoor, "svc")["accessToken"]
    frontdoor.http.delete(f"{frontdoor.url}/-/services/svc", headers=frontdoor.admin)
    frontdoor.put_ok("svc", tokened(url))
    assert frontdoor.score("svc", old).status_code == 401


def test_a_token_key_in_the_entry_makes_tokens_valid_on_every_front_door(frontdoor, backends, clock):
    """Two front door replicas (or one restarted) given the same entry accept each other's
    tokens; without a token_key each signs with its own random key."""
    from aml_core.frontdoor import FrontDoor

    from frontdoor_testkit import FrontDoorHarness, Served

    _, url = backends("b")
    body = tokened(url)
    body["token_key"] = "k" * 40
    frontdoor.put_ok("svc", body)
    other_app = FrontDoor("other-admin-token", clock=clock, token_refresh_after_s=60, token_grace_s=120)
    served = Served(other_app).start()
    other = FrontDoorHarness(other_app, served, "other-admin-token")
    try:
        other.put_ok("svc", body)
        token = get_token(frontdoor, "svc")["accessToken"]
        assert other.score("svc", token).status_code == 200
        assert frontdoor.put("svc", {**body, "token_key": "short"}).status_code == 400
        frontdoor.put_ok("own", tokened(url))  # no token_key: each signs with its own random key
        other.put_ok("own", tokened(url))
        assert other.score("own", get_token(frontdoor, "own")["accessToken"]).status_code == 401
    finally:
        other.http.close()
        served.stop()
