"""ACR-style authentication: challenge, token endpoints, exchange, scopes (O16-O19, S3, S4, S8)."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import stat

import jwt
import pytest
import requests

from aml_emulator.registry import RegistryService
from aml_emulator.registry.auth import NULL_GUID
from conftest import Client, error_codes
from registry_images import OCI_MANIFEST, sha256


def admin(reg: RegistryService, which: str = "password") -> tuple[str, str]:
    return reg.credentials.username, reg.credentials.passwords[which]


def parse_challenge(header: str) -> dict[str, str]:
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def get_token(reg: RegistryService, *scopes: str, auth=None, service: str | None = None) -> requests.Response:
    return requests.get(f"{reg.url}/oauth2/token", auth=auth, timeout=10,
                        params={"service": service or reg.login_server, "scope": list(scopes)})


def bearer(token: str) -> Client:
    return Client("", headers={"Authorization": f"Bearer {token}"})


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# -- O16 challenge ------------------------------------------------------------------------


def test_o16_challenge_for_pull_push_and_catalog(reg):
    anon = Client(reg.url)
    r = anon.get("/v2/team/app/manifests/latest")
    assert r.status_code == 401
    ch = parse_challenge(r.headers["WWW-Authenticate"])
    assert ch == {"realm": f"{reg.url}/oauth2/token", "service": reg.login_server,
                  "scope": "repository:team/app:pull"}
    body = r.json()
    assert body["errors"][0]["code"] == "UNAUTHORIZED"
    assert body["errors"][0]["message"] == "authentication required"
    assert body["errors"][0]["detail"] == [{"Type": "repository", "Name": "team/app", "Action": "pull"}]
    r = anon.post("/v2/team/app/blobs/uploads/")
    assert r.status_code == 401
    assert parse_challenge(r.headers["WWW-Authenticate"])["scope"] == "repository:team/app:pull,push"
    r = anon.get("/v2/_catalog")
    assert parse_challenge(r.headers["WWW-Authenticate"])["scope"] == "registry:catalog:*"
    r = Client(reg.url, ("amlemulator", "wrong")).get("/v2/")
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]


# -- O17 token endpoint -------------------------------------------------------------------


def test_o17_token_get_with_basic_credentials(reg):
    r = get_token(reg, "repository:team/app:pull,push", auth=admin(reg))
    assert r.status_code == 200
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] >= 60
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["issued_at"])
    c = claims(body["token"])
    assert c["aud"] == reg.login_server
    assert c["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
    assert {"iss", "nbf", "iat", "exp"} <= set(c)
    # The token works on /v2 and can push.
    cl = bearer(body["token"])
    cl.base = reg.url
    assert cl.push_blob("team/app", b"via token") == sha256(b"via token")


def test_o17_password_and_refresh_token_grants(reg):
    r = requests.post(f"{reg.url}/oauth2/token", timeout=10, data={
        "grant_type": "password", "service": reg.login_server, "username": reg.credentials.username,
        "password": reg.credentials.passwords["password2"], "scope": "repository:a:pull",
        "access_type": "offline"})
    assert r.status_code == 200
    refresh = r.json()["refresh_token"]
    assert claims(r.json()["access_token"])["access"] == [
        {"type": "repository", "name": "a", "actions": ["pull"]}]
    r = requests.post(f"{reg.url}/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "service": reg.login_server, "refresh_token": refresh,
        "scope": "repository:b:pull,push"})
    assert r.status_code == 200
    assert set(r.json()) >= {"access_token"}
    assert claims(r.json()["access_token"])["access"] == [
        {"type": "repository", "name": "b", "actions": ["pull", "push"]}]
    r = requests.post(f"{reg.url}/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "service": reg.login_server, "refresh_token": refresh + "x",
        "scope": "repository:b:pull"})
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
    r = requests.post(f"{reg.url}/oauth2/token", timeout=10, data={
        "grant_type": "password", "service": reg.login_server, "username": reg.credentials.username,
        "password": "nope", "scope": "repository:a:pull"})
    assert r.status_code == 401


def test_o17_grant_is_intersection_of_requested_and_allowed():
    with RegistryService(anonymous_pull=True) as reg:
        r = get_token(reg, "repository:pub/app:pull,push,delete", "registry:catalog:*")
        assert r.status_code == 200  # a partial grant is not an error
        assert claims(r.json()["token"])["access"] == [
            {"type": "repository", "name": "pub/app", "actions": ["pull"]}]
        r = get_token(reg, "repository:pub/app:pull,push,delete", "registry:catalog:*", auth=admin(reg))
        assert claims(r.json()["token"])["access"] == [
            {"type": "repository", "name": "pub/app", "actions": ["pull", "push", "delete"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]}]


def test_o17_token_endpoint_refusals(reg):
    r = get_token(reg, "repository:a:pull")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    r = get_token(reg, "repository:a:pull", auth=(reg.credentials.username, "wrong"))
    assert r.status_code == 401
    r = get_token(reg, "repository:a:pull", auth=admin(reg), service="other.azurecr.io")
    assert r.status_code == 401
    r = get_token(reg, "repository:A/../b:pull", auth=admin(reg))
    assert r.status_code == 400 and error_codes(r) == ["NAME_INVALID"]


# -- O18 exchange -------------------------------------------------------------------------


def test_o18_exchange_then_null_guid_login(reg):
    aad = reg.issue_aad_token(subject="alice", tenant="t1")
    r = requests.post(f"{reg.url}/oauth2/exchange", timeout=10, data={
        "grant_type": "access_token", "service": reg.login_server, "tenant": "t1", "access_token": aad})
    assert r.status_code == 200
    refresh = r.json()["refresh_token"]
    assert claims(refresh)["sub"] == "alice"
    # docker login -u 00000000-0000-0000-0000-000000000000 -p <refresh token>
    c = Client(reg.url, (NULL_GUID, refresh))
    assert c.get("/v2/").status_code == 200
    assert c.push_blob("alice/app", b"hi") == sha256(b"hi")
    r = get_token(reg, "repository:alice/app:pull", auth=(NULL_GUID, refresh))
    assert r.status_code == 200 and claims(r.json()["token"])["sub"] == "alice"
    # A refresh token is not an access token.
    assert bearer(refresh).get(reg.url + "/v2/alice/app/tags/list").status_code == 401
    for bad in ({"access_token": aad + "x", "tenant": "t1"}, {"access_token": aad, "tenant": "t2"},
                {"access_token": "not-a-jwt", "tenant": "t1"}):
        r = requests.post(f"{reg.url}/oauth2/exchange", timeout=10, data={
            "grant_type": "access_token", "service": reg.login_server, **bad})
        assert r.status_code == 401, bad


# -- O19 scope enforcement ------------------------------------------------------------------


def test_o19_pull_only_token_cannot_push(client: Client, reg):
    client.push_image("scoped/a", "v1")
    token = get_token(reg, "repository:scoped/a:pull", auth=admin(reg)).json()["token"]
    c = bearer(token)
    assert c.get(f"{reg.url}/v2/scoped/a/manifests/v1").status_code == 200
    r = c.post(f"{reg.url}/v2/scoped/a/blobs/uploads/")
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
    ch = parse_challenge(r.headers["WWW-Authenticate"])
    assert ch["scope"] == "repository:scoped/a:pull,push" and ch["error"] == "insufficient_scope"
    assert c.delete(f"{reg.url}/v2/scoped/a/manifests/v1").status_code == 401
    # Repository A's token means nothing for repository B, nor for the catalog.
    assert c.get(f"{reg.url}/v2/scoped/b/tags/list").status_code == 401
    assert c.get(f"{reg.url}/v2/_catalog").status_code == 401


def test_o19_foreign_expired_and_tampered_tokens_are_rejected(reg):
    with RegistryService() as other:
        foreign = get_token(other, "repository:a:pull", auth=admin(other)).json()["token"]
    assert bearer(foreign).get(f"{reg.url}/v2/a/tags/list").status_code == 401
    token = get_token(reg, "repository:a:pull", auth=admin(reg)).json()["token"]
    header, payload, sig = token.split(".")
    data = claims(token)
    data["access"][0]["actions"] = ["pull", "push"]
    forged_payload = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    r = bearer(f"{header}.{forged_payload}.{sig}").post(f"{reg.url}/v2/a/blobs/uploads/")
    assert r.status_code == 401
    unsigned = jwt.encode(data, "", algorithm="none")
    assert bearer(unsigned).get(f"{reg.url}/v2/a/tags/list").status_code == 401


def test_o19_expired_token_is_rejected():
    now = [2_000_000_000.0]
    with RegistryService(token_ttl=300, clock=lambda: now[0]) as reg:
        c = Client(reg.url, admin(reg))
        c.push_image("exp/app", "v1")
        token = get_token(reg, "repository:exp/app:pull", auth=admin(reg)).json()["token"]
        assert bearer(token).get(f"{reg.url}/v2/exp/app/tags/list").status_code == 200
        now[0] += 301
        r = bearer(token).get(f"{reg.url}/v2/exp/app/tags/list")
        assert r.status_code == 401
        assert "expired" in r.json()["errors"][0]["message"]


def test_s8_mount_requires_pull_on_source(client: Client, reg):
    digest = client.push_blob("secret/src", b"private layer")
    token = get_token(reg, "repository:mine/dst:pull,push", auth=admin(reg)).json()["token"]
    r = bearer(token).post(f"{reg.url}/v2/mine/dst/blobs/uploads/",
                           params={"mount": digest, "from": "secret/src"})
    assert r.status_code == 202  # no leak: an ordinary upload session instead
    assert client.get(f"/v2/mine/dst/blobs/{digest}").status_code == 404
    token = get_token(reg, "repository:mine/dst:pull,push", "repository:secret/src:pull",
                      auth=admin(reg)).json()["token"]
    r = bearer(token).post(f"{reg.url}/v2/mine/dst/blobs/uploads/",
                           params={"mount": digest, "from": "secret/src"})
    assert r.status_code == 201


# -- anonymous access ------------------------------------------------------------------------


def test_anonymous_pull_only_when_enabled(client: Client, reg):
    client.push_image("pub/app", "v1")
    assert Client(reg.url).get("/v2/pub/app/manifests/v1").status_code == 401
    with RegistryService(anonymous_pull=True) as open_reg:
        Client(open_reg.url, admin(open_reg)).push_image("pub/app", "v1")
        anon = Client(open_reg.url)
        assert anon.get("/v2/pub/app/manifests/v1").status_code == 200
        assert anon.get("/v2/pub/app/tags/list").json()["tags"] == ["v1"]
        # Anonymous push is always refused, even with a token obtained anonymously.
        assert anon.post("/v2/pub/app/blobs/uploads/").status_code == 401
        token = get_token(open_reg, "repository:pub/app:pull,push").json()["token"]
        assert claims(token)["access"][0]["actions"] == ["pull"]
        assert bearer(token).post(f"{open_reg.url}/v2/pub/app/blobs/uploads/").status_code == 401
        assert anon.delete("/v2/pub/app/manifests/v1").status_code == 401
        assert anon.get("/v2/_catalog").status_code == 401


# -- credentials ---------------------------------------------------------------------------


def test_both_passwords_work_and_regenerate_rotates_one(reg):
    old1, old2 = reg.credentials.passwords["password"], reg.credentials.passwords["password2"]
    assert old1 != old2 and len(old1) >= 32
    user = reg.credentials.username
    assert user == "amlemulator"
    assert Client(reg.url, (user, old1)).get("/v2/").status_code == 200
    assert Client(reg.url, (user, old2)).get("/v2/").status_code == 200
    new1 = reg.credentials.regenerate("password")
    assert new1 not in (old1, old2) and reg.credentials.passwords == {"password": new1, "password2": old2}
    assert Client(reg.url, (user, old1)).get("/v2/").status_code == 401
    assert Client(reg.url, (user, new1)).get("/v2/").status_code == 200
    assert Client(reg.url, (user, old2)).get("/v2/").status_code == 200
    assert get_token(reg, "repository:a:pull", auth=(user, old1)).status_code == 401
    with pytest.raises(ValueError, match="Valid options are: password, password2"):
        reg.credentials.regenerate("primary")


def test_s3_secrets_are_compared_in_constant_time(reg, monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("aml_emulator.registry.auth.hmac.compare_digest", spy)
    password = reg.credentials.passwords["password2"]
    assert Client(reg.url, (reg.credentials.username, password)).get("/v2/").status_code == 200
    assert any(b == password.encode() or a == password.encode() for a, b in calls)


def test_s4_no_secret_in_repr_logs_errors_or_state(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    reg = RegistryService(state_dir=tmp_path / "state").start()
    try:
        secrets_ = list(reg.credentials.passwords.values())
        c = Client(reg.url, admin(reg))
        c.push_image("s4/app", "v1")
        bad = Client(reg.url, (reg.credentials.username, secrets_[0] + "x")).get("/v2/s4/app/tags/list")
        texts = [repr(reg), str(reg), repr(reg.credentials), str(reg.credentials), caplog.text, bad.text,
                 str(bad.headers)]
        for path in (tmp_path / "state").rglob("*"):
            if path.is_file() and path.name != "secrets.json":
                texts.append(path.read_bytes().decode(errors="replace"))
        for secret in secrets_:
            assert not any(secret in t for t in texts)
        mode = stat.S_IMODE((tmp_path / "state" / "secrets.json").stat().st_mode)
        assert mode == 0o600
    finally:
        reg.stop()


def test_manifest_push_requires_push_scope_and_pull_suffices_for_head(client: Client, reg):
    digest, body = client.push_image("perm/app", "v1")
    token = get_token(reg, "repository:perm/app:pull", auth=admin(reg)).json()["token"]
    c = bearer(token)
    assert c.head(f"{reg.url}/v2/perm/app/manifests/{digest}").status_code == 200
    r = c.put(f"{reg.url}/v2/perm/app/manifests/v2", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 401
