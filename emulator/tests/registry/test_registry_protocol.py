"""The distribution spec v1.1 endpoints, one test per conformance item (O1-O15)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import pytest

from conftest import Client, error_codes, manifest_doc
from registry_images import OCI_MANIFEST, sha256

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def test_o1_base_endpoint_answers_with_api_version(client: Client, reg):
    r = client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    anonymous = Client(reg.url).get("/v2/")
    assert anonymous.status_code == 401
    assert anonymous.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer realm=")


def test_o2_blob_head_get_and_ranges(client: Client):
    data = os.urandom(6000)
    digest = client.push_blob("o2/repo", data)
    head = client.head(f"/v2/o2/repo/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.headers["Content-Length"] == "6000"
    assert head.content == b""
    get = client.get(f"/v2/o2/repo/blobs/{digest}")
    assert get.status_code == 200 and get.content == data
    assert get.headers["Docker-Content-Digest"] == digest
    cases = {"bytes=500-1499": (500, 1499), "bytes=500-": (500, 5999), "bytes=-500": (5500, 5999),
             "bytes=2000-5000": (2000, 5000), "bytes=5000-99999": (5000, 5999)}
    for header, (a, b) in cases.items():
        r = client.get(f"/v2/o2/repo/blobs/{digest}", headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["Content-Range"] == f"bytes {a}-{b}/6000", header
        assert r.content == data[a:b + 1], header
    for bad in ("bytes=6000-", "bytes=7000-8000", "bytes=10-5", "bytes=-0"):
        r = client.get(f"/v2/o2/repo/blobs/{digest}", headers={"Range": bad})
        assert r.status_code == 416, bad
        assert r.headers["Content-Range"] == "bytes */6000"
    missing = "sha256:" + "0" * 64
    r = client.get(f"/v2/o2/repo/blobs/{missing}")
    assert r.status_code == 404 and error_codes(r) == ["BLOB_UNKNOWN"]
    assert client.head(f"/v2/o2/repo/blobs/{missing}").status_code == 404
    # A blob pushed to one repository is not visible through another.
    assert client.get(f"/v2/o2/other/blobs/{digest}").status_code == 404


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_o3_manifest_get_head_exact_bytes_and_type(client: Client, media_type):
    digest, body = client.push_image("o3/repo", "v1", media_type=media_type)
    assert digest == sha256(body)
    for ref in ("v1", digest):
        r = client.get(f"/v2/o3/repo/manifests/{ref}", headers={"Accept": media_type})
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["Content-Type"] == media_type
        assert r.headers["Docker-Content-Digest"] == digest
        h = client.head(f"/v2/o3/repo/manifests/{ref}")
        assert h.status_code == 200 and h.content == b""
        assert h.headers["Docker-Content-Digest"] == digest
        assert h.headers["Content-Length"] == str(len(body))
    r = client.get("/v2/o3/repo/manifests/nope")
    assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
    r = client.get(f"/v2/o3/repo/manifests/sha256:{'1' * 64}")
    assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
    r = client.get("/v2/o3/repo/manifests/sha256:baddigeststring")
    assert r.status_code in (400, 404)


def test_o3_manifest_keeps_exact_bytes_with_odd_whitespace(client: Client):
    config = client.push_blob("o3/ws", b"{}")
    layer = client.push_blob("o3/ws", b"x")
    doc = manifest_doc(config, 2, [(layer, 1)])
    body = json.dumps(doc, indent=7).encode() + b"\n\n"
    r = client.put("/v2/o3/ws/manifests/t", data=body, headers={"Content-Type": OCI_MANIFEST + "; charset=utf-8"})
    assert r.status_code == 201
    got = client.get("/v2/o3/ws/manifests/t")
    assert got.content == body and got.headers["Content-Type"] == OCI_MANIFEST


def test_o4_monolithic_upload_and_digest_and_size_errors(client: Client):
    data = b"monolithic" * 100
    r = client.post("/v2/o4/repo/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    uuid.UUID(location.rsplit("/", 1)[1])  # the session id is a UUID
    r = client.put(location, params={"digest": sha256(b"something else")}, data=data)
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]
    r = client.put(location, params={"digest": sha256(data)}, data=data)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/o4/repo/blobs/{sha256(data)}"
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert client.get(f"/v2/o4/repo/blobs/{sha256(data)}").content == data
    # A chunk whose Content-Range length disagrees with the bytes sent: SIZE_INVALID.
    loc = client.post("/v2/o4/repo/blobs/uploads/").headers["Location"]
    r = client.put(loc, params={"digest": sha256(b"abc")}, data=b"abc",
                   headers={"Content-Range": "0-9"})
    assert r.status_code == 400 and error_codes(r) == ["SIZE_INVALID"]
    # A malformed digest is refused before anything touches the disk.
    r = client.put(loc, params={"digest": "sha256:../../etc/passwd"}, data=b"abc")
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]
    r = client.put(loc, params={"digest": "sha512:" + hashlib.sha512(b"abc").hexdigest()}, data=b"abc")
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]


def test_o4_empty_blob(client: Client):
    digest = client.push_blob("o4/empty", b"")
    assert digest == sha256(b"")
    r = client.get(f"/v2/o4/empty/blobs/{digest}")
    assert r.status_code == 200 and r.content == b""


def test_o5_single_post_upload(client: Client):
    data = os.urandom(3000)
    r = client.post("/v2/o5/repo/blobs/uploads/", params={"digest": sha256(data)}, data=data,
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/o5/repo/blobs/{sha256(data)}"
    assert client.get(f"/v2/o5/repo/blobs/{sha256(data)}").content == data
    r = client.post("/v2/o5/repo/blobs/uploads/", params={"digest": sha256(b"other")}, data=data)
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]


def test_o6_chunked_upload(client: Client):
    data = os.urandom(2500)
    r = client.post("/v2/o6/repo/blobs/uploads/")
    loc = r.headers["Location"]
    r = client.patch(loc, data=data[:1000], headers={"Content-Range": "0-999",
                                                     "Content-Type": "application/octet-stream"})
    assert r.status_code == 202
    assert r.headers["Range"] == "0-999"
    loc = r.headers["Location"]
    status = client.get(loc)
    assert status.status_code == 204 and status.headers["Range"] == "0-999"
    # Out of order: the next chunk must start at 1000.
    r = client.patch(loc, data=data[1500:2000], headers={"Content-Range": "1500-1999"})
    assert r.status_code == 416
    assert client.get(loc).headers["Range"] == "0-999"
    r = client.patch(loc, data=data[1000:2000], headers={"Content-Range": "1000-1999"})
    assert r.status_code == 202 and r.headers["Range"] == "0-1999"
    # The closing PUT carries the last chunk.
    r = client.put(loc, params={"digest": sha256(data)}, data=data[2000:],
                   headers={"Content-Range": "2000-2499"})
    assert r.status_code == 201
    assert client.get(f"/v2/o6/repo/blobs/{sha256(data)}").content == data
    # The session is gone once completed.
    r = client.get(loc)
    assert r.status_code == 404 and error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


def test_o7_streamed_patch_without_content_range(client: Client):
    data = os.urandom(300_000)

    def gen():  # chunked transfer encoding, no Content-Length, no Content-Range (as buildah)
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]

    assert client.head(f"/v2/o7/repo/blobs/{sha256(data)}").status_code == 404
    loc = client.post("/v2/o7/repo/blobs/uploads/").headers["Location"]
    r = client.patch(loc, data=gen())
    assert r.status_code == 202
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = client.put(r.headers["Location"], params={"digest": sha256(data)})
    assert r.status_code == 201
    assert client.get(f"/v2/o7/repo/blobs/{sha256(data)}").content == data


def test_o8_cancel_upload_and_expiry(client: Client, reg):
    loc = client.post("/v2/o8/repo/blobs/uploads/").headers["Location"]
    client.patch(loc, data=b"abc")
    r = client.delete(loc)
    assert r.status_code == 204
    r = client.get(loc)
    assert r.status_code == 404 and error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    assert client.put(loc, params={"digest": sha256(b"abc")}).status_code == 404


def test_o8_abandoned_sessions_expire(tmp_path):
    from aml_emulator.registry import RegistryService

    now = [1_000_000.0]
    with RegistryService(upload_ttl=60, clock=lambda: now[0]) as reg:
        c = Client(reg.url, (reg.credentials.username, reg.credentials.passwords["password"]))
        loc = c.post("/v2/o8/exp/blobs/uploads/").headers["Location"]
        assert c.patch(loc, data=b"abc").status_code == 202
        now[0] += 59
        assert c.get(loc).status_code == 204  # activity keeps it alive
        now[0] += 61
        r = c.get(loc)
        assert r.status_code == 404 and error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
        assert reg.storage.upload_count() == 0
        assert list((reg.state_dir / "uploads").iterdir()) == []


def test_o9_cross_repo_mount(client: Client):
    data = b"shared layer"
    digest = client.push_blob("o9/source", data)
    r = client.post("/v2/o9/target/blobs/uploads/", params={"mount": digest, "from": "o9/source"})
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/o9/target/blobs/{digest}"
    assert client.get(f"/v2/o9/target/blobs/{digest}").content == data
    # Unknown blob or unknown source: fall back to an upload session.
    r = client.post("/v2/o9/target/blobs/uploads/", params={"mount": sha256(b"nope"), "from": "o9/source"})
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]
    r = client.post("/v2/o9/target/blobs/uploads/", params={"mount": digest, "from": "o9/missing"})
    assert r.status_code == 202


def test_o10_manifest_put_by_tag_and_digest(client: Client):
    digest, body = client.push_image("o10/repo", "v1")
    r = client.put(f"/v2/o10/repo/manifests/{digest}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201  # idempotent retry
    assert r.headers["Location"] == f"/v2/o10/repo/manifests/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    r = client.put(f"/v2/o10/repo/manifests/sha256:{'2' * 64}", data=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]


def test_o10_manifest_referencing_missing_blob(client: Client):
    config = client.push_blob("o10/missing", b"{}")
    body = json.dumps(manifest_doc(config, 2, [(sha256(b"never pushed"), 12)])).encode()
    r = client.put("/v2/o10/missing/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]


@pytest.mark.parametrize("body,content_type", [
    (b"{not json", OCI_MANIFEST),
    (b"[]", OCI_MANIFEST),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode(), OCI_MANIFEST),
    (json.dumps({"schemaVersion": 1}).encode(), "application/vnd.docker.distribution.manifest.v1+prettyjws"),
    (json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": {}, "layers": []}).encode(),
     OCI_MANIFEST),
])
def test_o10_invalid_manifests(client: Client, body, content_type):
    r = client.put("/v2/o10/bad/manifests/v1", data=body, headers={"Content-Type": content_type})
    assert r.status_code == 400 and error_codes(r) == ["MANIFEST_INVALID"]


def test_o10_invalid_tag_and_size_cap(client: Client):
    digest, body = client.push_image("o10/tags", None)
    r = client.put("/v2/o10/tags/manifests/.bad", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_codes(r) == ["MANIFEST_INVALID"]
    r = client.put(f"/v2/o10/tags/manifests/{'a' * 129}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400
    r = client.put(f"/v2/o10/tags/manifests/{'a' * 128}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    # 4 MiB is accepted, anything beyond it is 413.
    doc = json.loads(body)
    doc["annotations"] = {"pad": ""}
    base = len(json.dumps(doc).encode())
    doc["annotations"]["pad"] = "x" * (4 * 1024 * 1024 - base)
    big = json.dumps(doc).encode()
    assert len(big) == 4 * 1024 * 1024
    r = client.put("/v2/o10/tags/manifests/big", data=big, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    doc["annotations"]["pad"] += "x"
    r = client.put("/v2/o10/tags/manifests/big2", data=json.dumps(doc).encode(),
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413 and error_codes(r) == ["SIZE_INVALID"]


def test_o10_subject_to_missing_manifest_is_accepted(client: Client):
    config = client.push_blob("o10/subj", b"{}")
    doc = manifest_doc(config, 2, [])
    doc["artifactType"] = "application/vnd.example.sbom"
    subject = sha256(b"not pushed")
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": 10}
    r = client.put("/v2/o10/subj/manifests/sbom", data=json.dumps(doc).encode(),
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    assert r.headers["OCI-Subject"] == subject


@pytest.mark.parametrize("index_type,child_type", [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)])
def test_o10_image_index_round_trip(client: Client, index_type, child_type):
    child, child_body = client.push_image("o10/index", None, media_type=child_type)
    index = {"schemaVersion": 2, "mediaType": index_type, "manifests": [
        {"mediaType": child_type, "digest": child, "size": len(child_body),
         "platform": {"architecture": "amd64", "os": "linux"}}]}
    body = json.dumps(index).encode()
    r = client.put("/v2/o10/index/manifests/multi", data=body, headers={"Content-Type": index_type})
    assert r.status_code == 201
    got = client.get("/v2/o10/index/manifests/multi")
    assert got.content == body and got.headers["Content-Type"] == index_type
    index["manifests"].append({"mediaType": child_type, "digest": sha256(b"absent"), "size": 6})
    r = client.put("/v2/o10/index/manifests/broken", data=json.dumps(index).encode(),
                   headers={"Content-Type": index_type})
    assert r.status_code == 400 and error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]


def test_o11_tags_list_and_pagination(client: Client):
    digest, body = client.push_image("o11/repo", "c")
    for tag in ("a", "b", "d", "B"):
        client.put(f"/v2/o11/repo/manifests/{tag}", data=body, headers={"Content-Type": OCI_MANIFEST})
    r = client.get("/v2/o11/repo/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": "o11/repo", "tags": ["B", "a", "b", "c", "d"]}
    r = client.get("/v2/o11/repo/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["B", "a"]
    assert r.headers["Link"] == '</v2/o11/repo/tags/list?n=2&last=a>; rel="next"'
    r = client.get("/v2/o11/repo/tags/list", params={"n": 2, "last": "a"})
    assert r.json()["tags"] == ["b", "c"]
    r = client.get("/v2/o11/repo/tags/list", params={"n": 2, "last": "c"})
    assert r.json()["tags"] == ["d"] and "Link" not in r.headers
    r = client.get("/v2/o11/repo/tags/list", params={"n": 0})
    assert r.json()["tags"] == [] and "Link" not in r.headers
    r = client.get("/v2/o11/nothere/tags/list")
    assert r.status_code == 404 and error_codes(r) == ["NAME_UNKNOWN"]


def test_o11_catalog_with_pagination(client: Client):
    for name in ("cat/b", "cat/a", "cat/c/d"):
        client.push_image(name, "latest")
    r = client.get("/v2/_catalog")
    assert r.json() == {"repositories": ["cat/a", "cat/b", "cat/c/d"]}
    r = client.get("/v2/_catalog", params={"n": 1})
    assert r.json() == {"repositories": ["cat/a"]}
    assert r.headers["Link"] == '</v2/_catalog?n=1&last=cat%2Fa>; rel="next"'
    r = client.get("/v2/_catalog", params={"n": 5, "last": "cat/a"})
    assert r.json() == {"repositories": ["cat/b", "cat/c/d"]}


def test_o12_referrers(client: Client):
    subject, subject_body = client.push_image("o12/repo", "v1")
    empty = client.push_blob("o12/repo", b"{}")
    made = {}
    for artifact in ("application/vnd.example.sbom", "application/vnd.example.sig"):
        doc = manifest_doc(empty, 2, [])
        doc["artifactType"] = artifact
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_body)}
        doc["annotations"] = {"kind": artifact}
        body = json.dumps(doc).encode()
        r = client.put(f"/v2/o12/repo/manifests/{sha256(body)}", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201 and r.headers["OCI-Subject"] == subject
        made[artifact] = sha256(body)
    r = client.get(f"/v2/o12/repo/referrers/{subject}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    index = r.json()
    assert index["mediaType"] == OCI_INDEX and index["schemaVersion"] == 2
    assert {m["digest"] for m in index["manifests"]} == set(made.values())
    assert all(m["annotations"]["kind"] == m["artifactType"] for m in index["manifests"])
    r = client.get(f"/v2/o12/repo/referrers/{subject}", params={"artifactType": "application/vnd.example.sig"})
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [made["application/vnd.example.sig"]]
    r = client.get(f"/v2/o12/repo/referrers/{sha256(b'no referrers')}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    assert client.get("/v2/o12/repo/referrers/sha256:nothex").status_code == 400


def test_o13_deletes(client: Client):
    digest, body = client.push_image("o13/repo", "v1", layer=b"to delete")
    client.put("/v2/o13/repo/manifests/v2", data=body, headers={"Content-Type": OCI_MANIFEST})
    r = client.delete("/v2/o13/repo/manifests/v2")  # a tag
    assert r.status_code == 202
    assert client.get("/v2/o13/repo/manifests/v2").status_code == 404
    assert client.get("/v2/o13/repo/manifests/v1").status_code == 200
    r = client.delete(f"/v2/o13/repo/manifests/{digest}")
    assert r.status_code == 202
    assert client.get(f"/v2/o13/repo/manifests/{digest}").status_code == 404
    assert client.get("/v2/o13/repo/manifests/v1").status_code == 404  # its tags went with it
    assert client.get("/v2/o13/repo/tags/list").json()["tags"] == []
    layer = sha256(b"to delete")
    r = client.delete(f"/v2/o13/repo/blobs/{layer}")
    assert r.status_code == 202
    assert client.get(f"/v2/o13/repo/blobs/{layer}").status_code == 404
    for path in (f"/v2/o13/repo/blobs/{layer}", f"/v2/o13/repo/manifests/{digest}",
                 "/v2/o13/repo/manifests/v1"):
        r = client.delete(path)
        assert r.status_code == 404, path
        assert error_codes(r)[0] in ("BLOB_UNKNOWN", "MANIFEST_UNKNOWN")


def test_o14_error_bodies_use_spec_codes(client: Client, reg):
    spec_codes = {"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
                  "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
                  "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
                  "TOOMANYREQUESTS"}
    responses = [
        client.get(f"/v2/o14/repo/blobs/{sha256(b'x')}"),
        client.get("/v2/o14/repo/manifests/latest"),
        client.get("/v2/o14/repo/tags/list"),
        client.get("/v2/O14/Repo/tags/list"),
        client.get(f"/v2/o14/repo/blobs/uploads/{uuid.uuid4()}"),
        client.put("/v2/o14/repo/manifests/latest", data=b"{", headers={"Content-Type": OCI_MANIFEST}),
        Client(reg.url).get("/v2/o14/repo/tags/list"),
        client.request("POST", "/v2/o14/repo/manifests/latest"),
    ]
    for r in responses:
        assert 400 <= r.status_code < 500
        body = r.json()
        assert set(body) == {"errors"}
        for entry in body["errors"]:
            assert set(entry) == {"code", "message", "detail"}
            assert entry["code"] in spec_codes
            assert entry["message"]


def test_o14_too_many_uploads_gives_429_with_retry_after():
    from aml_emulator.registry import RegistryService

    with RegistryService(max_uploads=2) as reg:
        c = Client(reg.url, (reg.credentials.username, reg.credentials.passwords["password"]))
        assert c.post("/v2/r/blobs/uploads/").status_code == 202
        assert c.post("/v2/r/blobs/uploads/").status_code == 202
        r = c.post("/v2/r/blobs/uploads/")
        assert r.status_code == 429 and error_codes(r) == ["TOOMANYREQUESTS"]
        assert int(r.headers["Retry-After"]) > 0


@pytest.mark.parametrize("name", [
    "UPPER/case", "a//b", "-lead", "trail-", "a..b", "a___b", "x" * 256, "a/b%2F..%2F..%2Fetc",
])
def test_o15_invalid_repository_names(client: Client, name):
    for method, path in (("GET", f"/v2/{name}/tags/list"), ("POST", f"/v2/{name}/blobs/uploads/"),
                         ("GET", f"/v2/{name}/manifests/latest")):
        r = client.request(method, path)
        assert r.status_code in (400, 404), (method, path)
        if r.status_code == 400:
            assert error_codes(r) == ["NAME_INVALID"]


@pytest.mark.parametrize("name", ["a", "a/b/c", "a.b", "a_b", "a__b", "a---b", "0abc/d-e.f_g"])
def test_o15_valid_repository_names(client: Client, name):
    digest = client.push_blob(name, b"ok")
    assert client.get(f"/v2/{name}/blobs/{digest}").status_code == 200


@pytest.mark.parametrize("path", [
    "/v2/a/../b/tags/list", "/v2/../../etc/tags/list", "/v2/a/./b/blobs/uploads/",
    "/v2/..%2F..%2Fetc/tags/list", "/v2/a/blobs/sha256:..%2F..%2F..%2Fetc%2Fpasswd",
    "/v2/a/manifests/..%2F..%2Fsecrets.json", "/v2/a/blobs/uploads/..%2F..%2Fsecrets.json",
])
def test_o15_no_path_escapes_the_store(reg, path):
    # Sent raw (requests would normalise the dot segments away before they reach us).
    import base64
    import http.client

    user, password = reg.credentials.username, reg.credentials.passwords["password"]
    conn = http.client.HTTPConnection("127.0.0.1", int(reg.login_server.rsplit(":", 1)[1]), timeout=10)
    try:
        for method in ("GET", "POST", "PUT", "DELETE"):
            conn.request(method, path, body=b"", headers={
                "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
            r = conn.getresponse()
            body = r.read()
            assert r.status in (400, 404, 405), (method, path, r.status)
            code = json.loads(body)["errors"][0]["code"]
            assert code in ("NAME_INVALID", "DIGEST_INVALID", "UNSUPPORTED", "BLOB_UPLOAD_UNKNOWN",
                            "MANIFEST_UNKNOWN", "MANIFEST_INVALID")
    finally:
        conn.close()
    assert sorted(p.name for p in reg.state_dir.iterdir()) == [
        "blobs", "endpoint.json", "registry-format.json", "repositories", "uploads"]
    assert list((reg.state_dir / "repositories").iterdir()) == []


def test_o8_cancel_while_the_closing_put_is_streaming(client: Client, reg):
    import threading
    import time

    loc = client.post("/v2/o8/race/blobs/uploads/").headers["Location"]
    upload_id = loc.rsplit("/", 1)[1]
    release = threading.Event()

    def body():
        yield b"first part "
        release.wait(10)
        yield b"second part"

    result = {}
    digest = sha256(b"first part second part")
    t = threading.Thread(target=lambda: result.setdefault(
        "r", client.put(loc, params={"digest": digest}, data=body())))
    t.start()
    deadline = time.monotonic() + 10
    while not reg.storage._uploads[upload_id].busy:  # the server is inside the PUT body
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert Client(reg.url, client.session.auth).delete(loc).status_code == 204
    release.set()
    t.join(10)
    r = result["r"]
    assert r.status_code == 404 and error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    assert client.head(f"/v2/o8/race/blobs/{digest}").status_code == 404
    assert reg.storage.upload_count() == 0


@pytest.mark.parametrize("where", ["layer", "config"])
def test_o10_a_descriptor_size_that_does_not_match_the_blob_is_manifest_invalid(client: Client, where):
    config = client.push_blob("o10/sizes", b"{}")
    layer = client.push_blob("o10/sizes", b"layer bytes")
    config_size, layer_size = (2, 999) if where == "layer" else (3, len(b"layer bytes"))
    body = json.dumps(manifest_doc(config, config_size, [(layer, layer_size)])).encode()
    r = client.put("/v2/o10/sizes/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_codes(r) == ["MANIFEST_INVALID"], r.text
    wrong = layer if where == "layer" else config
    assert wrong in r.text and "size" in r.text
    assert client.get("/v2/o10/sizes/manifests/v1").status_code == 404
    fixed = json.dumps(manifest_doc(config, 2, [(layer, len(b"layer bytes"))])).encode()
    assert client.put("/v2/o10/sizes/manifests/v1", data=fixed,
                      headers={"Content-Type": OCI_MANIFEST}).status_code == 201


@pytest.mark.parametrize("depth", [900, 5000, 100_000])
def test_o10_a_deeply_nested_manifest_is_manifest_invalid_not_a_500(client: Client, depth):
    r = client.put("/v2/o10/deep/manifests/v1", data=b"[" * depth + b"]" * depth,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_codes(r) == ["MANIFEST_INVALID"], r.text
    assert client.get("/v2/").status_code == 200
