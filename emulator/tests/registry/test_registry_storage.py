"""Durable storage, re-verification, streaming without buffering, lifecycle (R11, R12, S13)."""

from __future__ import annotations

import os
import tracemalloc

import requests

from aml_emulator.registry import RegistryService
from conftest import Client, error_codes
from registry_images import sha256


def admin_client(reg: RegistryService) -> Client:
    return Client(reg.url, (reg.credentials.username, reg.credentials.passwords["password"]))


def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "state"
    reg = RegistryService(state_dir=state).start()
    try:
        c = admin_client(reg)
        digest, body = c.push_image("durable/app", "v1", layer=b"durable layer")
        c.put("/v2/durable/app/manifests/v2", data=body,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        pending = c.post("/v2/durable/app/blobs/uploads/").headers["Location"]
        passwords = reg.credentials.passwords
        refresh = requests.post(f"{reg.url}/oauth2/token", timeout=10, data={
            "grant_type": "password", "service": reg.login_server, "username": reg.credentials.username,
            "password": passwords["password"], "access_type": "offline"}).json()["refresh_token"]
        port = int(reg.login_server.rsplit(":", 1)[1])
    finally:
        reg.stop()
    assert state.exists()
    reg2 = RegistryService(state_dir=state, port=port).start()
    try:
        assert reg2.credentials.passwords == passwords
        c = admin_client(reg2)
        got = c.get("/v2/durable/app/manifests/v1")
        assert got.status_code == 200 and got.content == body
        assert got.headers["Docker-Content-Digest"] == digest
        assert c.get("/v2/durable/app/tags/list").json()["tags"] == ["v1", "v2"]
        assert c.get(f"/v2/durable/app/blobs/{sha256(b'durable layer')}").content == b"durable layer"
        assert c.get("/v2/_catalog").json() == {"repositories": ["durable/app"]}
        # Upload sessions do not survive (their hash state was in memory): clients restart them.
        r = c.get(pending)
        assert r.status_code == 404 and error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
        assert list((state / "uploads").iterdir()) == []
        # Same login server and persisted signing key: tokens issued before the restart work.
        assert Client(reg2.url, ("00000000-0000-0000-0000-000000000000", refresh)).get("/v2/").status_code == 200
        assert not list(state.rglob(".tmp-*"))
    finally:
        reg2.stop()


def test_blobs_are_reverified_after_restart(tmp_path):
    state = tmp_path / "state"
    with RegistryService(state_dir=state) as reg:
        c = admin_client(reg)
        digest, _ = c.push_image("verify/app", "v1", layer=b"original bytes")
        layer = sha256(b"original bytes")
    (state / "blobs" / "sha256" / layer[7:]).write_bytes(b"tampered bytes")
    (state / "blobs" / "sha256" / digest[7:]).write_bytes(b'{"tampered": true}')
    with RegistryService(state_dir=state) as reg:
        c = admin_client(reg)
        r = c.get(f"/v2/verify/app/blobs/{layer}")
        assert r.status_code == 404 and error_codes(r) == ["BLOB_UNKNOWN"]
        assert not (state / "blobs" / "sha256" / layer[7:]).exists()  # the bad copy is dropped
        r = c.get("/v2/verify/app/manifests/v1")
        assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
        # The client pushes the layer again; it is served once more.
        assert c.push_blob("verify/app", b"original bytes") == layer
        assert c.get(f"/v2/verify/app/blobs/{layer}").content == b"original bytes"


def test_a_corrupted_blob_dropped_on_read_is_logged(tmp_path, caplog):
    state = tmp_path / "state"
    with RegistryService(state_dir=state) as reg:
        admin_client(reg).push_image("verify/logged", "v1", layer=b"good layer")
    layer = sha256(b"good layer")
    (state / "blobs" / "sha256" / layer[7:]).write_bytes(b"bit rot")
    with RegistryService(state_dir=state) as reg, caplog.at_level("WARNING", logger="aml_emulator.registry"):
        assert admin_client(reg).get(f"/v2/verify/logged/blobs/{layer}").status_code == 404
    dropped = [r for r in caplog.records if layer in r.getMessage()]
    assert dropped and dropped[0].levelname == "WARNING", caplog.text
    assert "do not match its digest" in dropped[0].getMessage() and "pushes it again" in dropped[0].getMessage()


def test_temporary_state_is_removed_on_stop():
    reg = RegistryService().start()
    state = reg.state_dir
    admin_client(reg).push_blob("tmp/app", b"x")
    assert any(state.rglob("*"))
    reg.stop()
    assert not state.exists()


def test_reset_empties_every_repository(reg, client):
    client.push_image("reset/app", "v1")
    loc = client.post("/v2/reset/app/blobs/uploads/").headers["Location"]
    reg.reset()
    assert client.get("/v2/_catalog").json() == {"repositories": []}
    assert client.get("/v2/reset/app/tags/list").status_code == 404
    assert client.get(loc).status_code == 404
    assert client.get("/v2/").status_code == 200  # credentials are kept


def test_s13_loopback_by_default(reg):
    assert reg.url.startswith("http://127.0.0.1:")
    assert reg.login_server == reg.url.removeprefix("http://")


def test_large_blob_streams_without_buffering(client: Client):
    size = 24 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    data_digest = sha256(block * 24)

    def gen():
        for _ in range(24):
            yield block

    tracemalloc.start()
    try:
        loc = client.post("/v2/big/app/blobs/uploads/").headers["Location"]
        r = client.patch(loc, data=gen())
        assert r.status_code == 202 and r.headers["Range"] == f"0-{size - 1}"
        r = client.put(r.headers["Location"], params={"digest": data_digest})
        assert r.status_code == 201
        received = 0
        with client.get(f"/v2/big/app/blobs/{data_digest}", stream=True) as resp:
            assert resp.headers["Content-Length"] == str(size)
            for chunk in resp.iter_content(1 << 20):
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    # Client and server share this process: neither side held the 24 MiB body at once.
    assert peak < 12 * 1024 * 1024, peak


def test_r9_retried_pushes_give_the_same_digest(client: Client):
    first, body = client.push_image("retry/app", "v1", layer=b"same layer")
    again, _ = client.push_image("retry/app", "v1", layer=b"same layer")
    assert first == again
    assert client.push_blob("retry/app", b"same layer") == sha256(b"same layer")
    assert client.get("/v2/retry/app/tags/list").json()["tags"] == ["v1"]


def test_r10_concurrent_pushes_of_one_blob_and_tag(reg):
    from concurrent.futures import ThreadPoolExecutor

    data = os.urandom(2 * 1024 * 1024)

    def push(i: int) -> tuple[str, str]:
        c = admin_client(reg)
        digest, _ = c.push_image("race/app", "latest", layer=data, config=b'{"os":"linux"}')
        return digest, c.push_blob("race/app", data)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(push, range(6)))
    assert len(set(results)) == 1
    c = admin_client(reg)
    assert c.get(f"/v2/race/app/blobs/{sha256(data)}").content == data
    assert c.get("/v2/race/app/manifests/latest").headers["Docker-Content-Digest"] == results[0][0]
    assert reg.storage.upload_count() == 0
    assert list((reg.state_dir / "uploads").iterdir()) == []


def test_stop_then_start_again_serves_a_fresh_temporary_store():
    reg = RegistryService()
    reg.start()
    admin_client(reg).push_blob("again/app", b"x")
    reg.stop()
    reg.start()
    try:
        c = admin_client(reg)
        assert c.get("/v2/").status_code == 200
        assert c.get(f"/v2/again/app/blobs/{sha256(b'x')}").status_code == 404
        assert c.push_blob("again/app", b"y") == sha256(b"y")
    finally:
        reg.stop()


def test_r11_store_from_a_newer_format_is_refused(tmp_path):
    import json

    import pytest

    state = tmp_path / "state"
    with RegistryService(state_dir=state) as reg:
        admin_client(reg).push_blob("fmt/app", b"x")
    marker = state / "registry-format.json"
    assert json.loads(marker.read_text()) == {"format": 1}
    marker.write_text(json.dumps({"format": 99}))
    with pytest.raises(RuntimeError, match="newer than this emulator's 1: upgrade aml-emulator"):
        RegistryService(state_dir=state)
    assert (state / "blobs").is_dir()
    assert json.loads(marker.read_text()) == {"format": 99}  # left as found
