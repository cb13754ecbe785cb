"""Property-based fuzzing of the registry's distribution API (hypothesis; the registry has no
OpenAPI document for schemathesis to read).

Requests are built from the API's own shapes, valid and not: every endpoint template, with
repository names, tags and digests drawn from valid, malformed and hostile values, the
headers the protocol reads (Content-Type, Content-Range, Range) and bodies that are random
bytes or manifest-shaped JSON with wrong descriptors. The properties: never a 5xx, an
answer within the timeout, every 4xx on ``/v2/`` a spec error body, and afterwards the
registry still takes a push and serves it back.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aml_emulator.registry import RegistryService
from conftest import Client

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])
SPEC_CODES = {"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
              "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN",
              "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS"}


@pytest.fixture(scope="module")
def fuzzed():
    with RegistryService() as service:
        client = Client(service.url, (service.credentials.username, service.credentials.passwords["password"]))
        manifest_digest, _ = client.push_image("fuzz/app", "v1")
        layer = client.push_blob("fuzz/app", b"a layer")
        yield client, manifest_digest, layer


def _digests(known: list[str]):
    return st.one_of(st.sampled_from(known), st.just("sha256:" + "0" * 64), st.just("sha256:baddigeststring"),
                     st.just("sha512:" + "a" * 128), st.text(max_size=80),
                     st.binary(min_size=1, max_size=40).map(lambda b: "sha256:" + hashlib.sha256(b).hexdigest()))


_NAMES = st.one_of(st.sampled_from(["fuzz/app", "fuzz/other", "UPPER/case", "a//b", "..", "a/../b", "x" * 300,
                                    "-lead", "ok_name", "a.b-c/d__e"]),
                   st.text(alphabet="abcdefgh0123456789._-/", min_size=1, max_size=30))
_TAGS = st.one_of(st.sampled_from(["v1", "latest", "-bad", "a" * 200, "v1..x"]),
                  st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="/?#%"),
                          min_size=1, max_size=40))
_CONTENT_TYPES = st.sampled_from([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json", "application/octet-stream", "application/json",
    "text/plain", "", "application/vnd.oci.image.manifest.v1+json; charset=utf-8"])
_HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20).map(str.strip)
_RANGES = st.one_of(st.none(), st.tuples(st.integers(-5, 5000), st.integers(-5, 5000)).map(lambda p: f"{p[0]}-{p[1]}"),
                    _HEADER_TEXT)


@st.composite
def requests_to_the_api(draw, known: list[str]):
    name, digest = draw(_NAMES), draw(_digests(known))
    reference = draw(st.one_of(_TAGS, _digests(known)))
    template = draw(st.sampled_from([
        ("GET", "/v2/"), ("GET", f"/v2/{name}/manifests/{reference}"), ("HEAD", f"/v2/{name}/manifests/{reference}"),
        ("PUT", f"/v2/{name}/manifests/{reference}"), ("DELETE", f"/v2/{name}/manifests/{reference}"),
        ("GET", f"/v2/{name}/blobs/{digest}"), ("HEAD", f"/v2/{name}/blobs/{digest}"),
        ("DELETE", f"/v2/{name}/blobs/{digest}"), ("POST", f"/v2/{name}/blobs/uploads/"),
        ("POST", f"/v2/{name}/blobs/uploads/?digest={digest}"),
        ("POST", f"/v2/{name}/blobs/uploads/?mount={digest}&from={draw(_NAMES)}"),
        ("PATCH", f"/v2/{name}/blobs/uploads/{draw(st.uuids())}"),
        ("PUT", f"/v2/{name}/blobs/uploads/{draw(st.uuids())}?digest={digest}"),
        ("GET", f"/v2/{name}/tags/list?n={draw(st.integers(-3, 1000))}&last={draw(_TAGS)}"),
        ("GET", f"/v2/_catalog?n={draw(st.text(max_size=6))}"),
        ("GET", f"/v2/{name}/referrers/{digest}?artifactType={draw(st.text(max_size=30))}"),
        ("GET", f"/oauth2/token?service={draw(st.text(max_size=20))}&scope={draw(st.text(max_size=40))}"),
        ("POST", "/oauth2/exchange"), ("POST", "/oauth2/token"),
    ]))
    descriptor = st.fixed_dictionaries({"mediaType": st.text(max_size=40), "digest": _digests(known),
                                        "size": st.one_of(st.integers(-10, 10 ** 12), st.text(max_size=5), st.none())})
    manifest = st.fixed_dictionaries({
        "schemaVersion": st.sampled_from([2, 1, "2", None]),
        "mediaType": _CONTENT_TYPES, "config": st.one_of(descriptor, st.none(), st.integers()),
        "layers": st.one_of(st.lists(descriptor, max_size=3), st.text(max_size=5)),
        "subject": st.one_of(descriptor, st.none()),
        "manifests": st.lists(descriptor, max_size=2)})
    body = draw(st.one_of(st.binary(max_size=300), manifest.map(lambda m: json.dumps(m).encode()),
                          st.integers(1, 5000).map(lambda d: b"[" * d + b"]" * d)))
    headers = {"Content-Type": draw(_CONTENT_TYPES)}
    for header, value in (("Content-Range", draw(_RANGES)), ("Range", draw(_RANGES))):
        if value is not None:
            headers[header] = value if header == "Content-Range" else f"bytes={value}"
    return template[0], template[1], headers, body


@given(data=st.data())
@FUZZ
def test_no_request_gets_a_5xx_and_errors_use_spec_codes(fuzzed, data):
    client, manifest_digest, layer = fuzzed
    method, path, headers, body = data.draw(requests_to_the_api([manifest_digest, layer]))
    response = client.request(method, path, headers=headers, data=body if method in ("PUT", "POST", "PATCH") else None,
                              timeout=10)
    assert response.status_code < 500, (method, path, headers, body[:200], response.status_code, response.text[:300])
    if path.startswith("/v2/") and 400 <= response.status_code < 500 and method != "HEAD" and response.content:
        codes = {e["code"] for e in response.json()["errors"]}
        assert codes <= SPEC_CODES, (method, path, response.text[:300])


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3),
                        max_leaves=20)


@given(body=st.one_of(st.binary(max_size=300), _JSONISH.map(lambda v: json.dumps(v).encode()),
                      st.integers(1, 200_000).map(lambda d: b"[" * d + b"]" * d),
                      st.integers(1, 200_000).map(lambda d: b'{"a":' * d + b"1" + b"}" * d)),
       content_type=_CONTENT_TYPES)
@FUZZ
def test_any_manifest_body_on_a_valid_repository_never_gets_a_5xx(fuzzed, body, content_type):
    client, _, _ = fuzzed
    response = client.put("/v2/fuzz/app/manifests/fuzzed", data=body, headers={"Content-Type": content_type},
                          timeout=10)
    assert response.status_code < 500, (body[:200], content_type, response.status_code, response.text[:300])


def test_after_the_fuzzing_the_registry_takes_a_push_and_serves_it(fuzzed):
    client, _, _ = fuzzed
    assert client.get("/v2/").status_code == 200
    digest, body = client.push_image("fuzz/after", "v2", layer=b"after the fuzz")
    got = client.get("/v2/fuzz/after/manifests/v2",
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert got.status_code == 200 and got.content == body and got.headers["Docker-Content-Digest"] == digest
    assert requests.get(f"{client.base}/v2/", timeout=10).status_code == 401  # auth still enforced
