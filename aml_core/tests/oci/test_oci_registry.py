"""The registry client against Debian's docker-registry, read back by skopeo."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import shutil
import subprocess
import threading
import time
import uuid
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aml_core.errors import AuthError, InvalidConfig, NotFound
from aml_core.oci import (
    AppSpec,
    EnvironmentSpec,
    ModelFiles,
    PackageSpec,
    Reference,
    RegistryClient,
    build_image,
)
from aml_core.oci.layers import Blob
from aml_core.oci.testing import reference_registry

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None and not Path("/usr/bin/docker-registry").exists(),
    reason="docker-registry is not installed (apt-get install docker-registry, or scripts/install-system-deps.sh)",
)


@pytest.fixture
def registry(tmp_path):
    with reference_registry(tmp_path / "registry") as url:
        yield url


@pytest.fixture
def image(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
    (tmp_path / "weights.bin").write_bytes(
        random.Random(0).randbytes(1 << 20)
    )  # 1 MiB, incompressible
    return build_image(
        PackageSpec(
            app=AppSpec(entry_script="score.py", source_directory=src),
            environment=EnvironmentSpec(name="env", pip_requirements=["numpy"]),
            models=[ModelFiles.from_path("weights", 2, tmp_path / "weights.bin")],
        )
    )


def test_push_then_pull_round_trips_every_blob(registry, image):
    client = RegistryClient(registry)
    assert client.ping()
    digest = client.push_image("aml/quickstart", image, tags=["1", "latest"])
    assert digest == image.digest
    pulled = client.pull_image("aml/quickstart", "1")
    assert pulled.digest == image.digest
    assert pulled.config.read() == image.config.read()
    assert [b.read() for b in pulled.layers] == [b.read() for b in image.layers]
    assert sorted(client.list_tags("aml/quickstart")) == ["1", "latest"]


def test_pushing_again_uploads_nothing(registry, image):
    client = RegistryClient(registry)
    client.push_image("aml/again", image)
    calls = []
    real = client._session.request
    client._session.request = lambda m, u, **kw: calls.append(m) or real(m, u, **kw)
    client.push_image("aml/again", image)
    assert "PATCH" not in calls and "POST" not in calls  # HEAD said every blob is there


def test_chunked_upload_of_a_big_blob(registry, image):
    client = RegistryClient(registry, chunk_size=256 * 1024)
    big = max(image.layers, key=lambda b: b.size)
    assert big.size > client.chunk_size
    calls = []
    real = client._session.request
    client._session.request = lambda m, u, **kw: calls.append(m) or real(m, u, **kw)
    client.push_blob("aml/chunks", big)
    assert calls.count("PATCH") == -(-big.size // client.chunk_size)
    assert client.get_blob("aml/chunks", big.digest) == big.read()


def test_cross_repository_mount(registry, image):
    client = RegistryClient(registry)
    client.push_image("aml/source", image)
    calls = []
    real = client._session.request
    client._session.request = lambda m, u, **kw: calls.append(m) or real(m, u, **kw)
    client.push_image("aml/target", image, mount_from="aml/source")
    assert "PATCH" not in calls and "PUT" in calls  # only the manifest PUT
    assert client.pull_image("aml/target", "latest").digest == image.digest


def test_skopeo_reads_what_we_pushed(registry, image, tmp_path):
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo)")
    RegistryClient(registry).push_image("aml/skopeo", image, tags=["v1"])
    host = urlsplit(registry).netloc
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{host}/aml/skopeo:v1"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    info = json.loads(out.stdout)
    assert info["Digest"] == image.digest
    assert info["Layers"] == [b.digest for b in image.layers]
    assert info["Labels"]["org.aml.entry-script"] == "score.py"
    # and skopeo can copy it out to an OCI layout, verifying every blob on the way
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            f"docker://{host}/aml/skopeo:v1",
            f"oci:{tmp_path / 'copy'}:v1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_delete_manifest_then_missing(registry, image):
    client = RegistryClient(registry)
    client.push_image("aml/del", image, tags=["1"])
    client.delete_manifest("aml/del", image.digest)
    with pytest.raises(NotFound, match="MANIFEST_UNKNOWN"):
        client.get_manifest("aml/del", image.digest)
    client.delete_blob("aml/del", image.layers[0].digest)
    assert not client.blob_exists("aml/del", image.layers[0].digest)


def test_missing_tag_and_bad_names(registry):
    client = RegistryClient(registry)
    with pytest.raises(NotFound):
        client.get_manifest("aml/none", "nope")
    with pytest.raises(InvalidConfig, match="repository name"):
        client.list_tags("Bad/Name")
    with pytest.raises(InvalidConfig, match="sha256"):
        client.get_blob("aml/none", "sha256:baddigest")


def test_tampered_blob_is_detected(registry, image):
    client = RegistryClient(registry)
    client.push_image("aml/tamper", image)
    real = client._session.request

    def corrupt(method, url, **kw):
        resp = real(method, url, **kw)
        if method == "GET" and "/blobs/" in url:
            resp._content = resp.content[:-1] + b"!"
        return resp

    client._session.request = corrupt
    with pytest.raises(Exception, match="does not match its digest"):
        client.pull_image("aml/tamper", "latest")


def _htpasswd_line(user: str, password: str) -> str:
    with warnings.catch_warnings():  # crypt is deprecated (removed in 3.13); fine for a test file
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n"


def test_basic_auth(tmp_path, image):
    with reference_registry(tmp_path / "reg", htpasswd=_htpasswd_line("admin", "s3cret")) as url:
        with pytest.raises(AuthError):
            RegistryClient(url).ping()
        with pytest.raises(AuthError):
            RegistryClient(url, username="admin", password="wrong").push_image("aml/auth", image)
        client = RegistryClient(url, username="admin", password="s3cret")
        client.push_image("aml/auth", image)
        assert client.list_tags("aml/auth") == ["latest"]
        assert "s3cret" not in repr(client)


# -- bearer tokens: docker-registry in token mode, with a token server in this test ----------


def _token_material(tmp_path: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token-issuer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


REFRESH_TOKEN = "acr-refresh-token-for-tests"


class _TokenServer(ThreadingHTTPServer):
    """Issues distribution-spec JWTs for user admin/s3cret, granting what was asked for."""

    def __init__(self, key, cert, grant: str):
        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.key, self.cert, self.grant, self.requests = key, cert, grant, []


class _TokenHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        query = parse_qs(urlsplit(self.path).query)
        expected = "Basic " + base64.b64encode(b"admin:s3cret").decode()
        self._issue(query, self.headers.get("Authorization") == expected)

    def do_POST(self):  # ACR: grant_type=refresh_token with the refresh token in the form
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        scopes = [s for scope in form.get("scope", []) for s in scope.split(" ")]
        ok = form.get("grant_type") == ["refresh_token"] and form.get("refresh_token") == [
            REFRESH_TOKEN
        ]
        self._issue({**form, "scope": scopes}, ok)

    def _issue(self, query: dict, authorised: bool):
        import jwt
        from cryptography.hazmat.primitives import serialization

        server: _TokenServer = self.server
        server.requests.append(query)
        if not authorised:
            self.send_response(401)
            self.end_headers()
            return
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            allowed = [a for a in actions.split(",") if a in server.grant.split(",")]
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        der = server.cert.public_bytes(serialization.Encoding.DER)
        token = jwt.encode(
            {
                "iss": "token-issuer",
                "sub": "admin",
                "aud": "test-registry",
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": uuid.uuid4().hex,
                "access": access,
            },
            server.key,
            algorithm="RS256",
            headers={"x5c": [base64.b64encode(der).decode()]},
        )
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def token_registry(tmp_path):
    pytest.importorskip("jwt", reason="PyJWT signs the test tokens (pip install pyjwt)")
    key, cert = _token_material(tmp_path)
    server = _TokenServer(key, cert, "pull,push,delete")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    auth = (
        f"auth:\n  token:\n    realm: {realm}\n    service: test-registry\n"
        f"    issuer: token-issuer\n    rootcertbundle: {tmp_path / 'cert.pem'}\n"
    )
    try:
        with reference_registry(tmp_path / "reg", extra_config=auth) as url:
            yield url, server
    finally:
        server.shutdown()
        server.server_close()


def test_bearer_token_challenge(token_registry, image):
    url, server = token_registry
    with pytest.raises(AuthError, match="refused the credentials for user 'admin'"):
        RegistryClient(url, username="admin", password="wrong").ping()
    with pytest.raises(AuthError, match="requires credentials and none were given"):
        RegistryClient(url).list_tags("aml/tok")
    client = RegistryClient(url, username="admin", password="s3cret")
    client.push_image("aml/tok", image, tags=["1"])
    assert client.pull_image("aml/tok", "1").digest == image.digest
    # the client asks for what the challenge names (docker-registry orders actions randomly)
    scopes = {
        s.rsplit(":", 1)[0] + ":" + ",".join(sorted(s.rsplit(":", 1)[1].split(",")))
        for q in server.requests
        for s in q.get("scope", [])
    }
    assert "repository:aml/tok:pull,push" in scopes
    assert all(q.get("service") == ["test-registry"] for q in server.requests)
    # the token was reused: far fewer token requests than registry requests
    assert len(server.requests) <= 6


def test_acr_refresh_token_login(token_registry, image):
    from aml_core.oci.registry import NULL_GUID_USER

    url, server = token_registry
    with pytest.raises(AuthError):
        RegistryClient(url, username=NULL_GUID_USER, password="not-the-token").ping()
    client = RegistryClient(url, username=NULL_GUID_USER, password=REFRESH_TOKEN)
    client.push_image("aml/acr", image, tags=["1"])
    assert client.list_tags("aml/acr") == ["1"]
    assert any(q.get("grant_type") == ["refresh_token"] for q in server.requests)
    assert REFRESH_TOKEN not in repr(client)


def test_reference_parsing():
    ref = Reference.parse("127.0.0.1:5000/aml/quickstart:3")
    assert (ref.registry, ref.repository, ref.reference) == (
        "127.0.0.1:5000",
        "aml/quickstart",
        "3",
    )
    assert str(Reference.parse("reg.io/a/b")) == "reg.io/a/b:latest"
    digest = "sha256:" + "a" * 64
    assert Reference.parse(f"reg.io/a@{digest}").reference == digest
    with pytest.raises(InvalidConfig):
        Reference.parse("quickstart:1")
    with pytest.raises(InvalidConfig):
        Reference.parse("reg.io/UPPER:1")


def test_blob_push_rejects_a_forged_digest(registry):
    client = RegistryClient(registry)
    forged = Blob(
        digest="sha256:" + "1" * 64, size=3, media_type="application/octet-stream", data=b"abc"
    )
    with pytest.raises(Exception, match="DIGEST_INVALID|400"):
        client.push_blob("aml/forged", forged)


def _throttled_session(client, times: int):
    """Answer the first ``times`` GETs with 429 + Retry-After: 0, then pass through."""
    import requests as _requests

    real = client._session.request
    seen = []

    def request(method, url, **kw):
        seen.append(method)
        if method == "GET" and len([m for m in seen if m == "GET"]) <= times:
            resp = _requests.Response()
            resp.status_code, resp.url = 429, url
            resp.headers["Retry-After"] = "0"
            resp._content = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
            return resp
        return real(method, url, **kw)

    client._session.request = request
    return seen


def test_throttled_reads_are_retried_a_bounded_number_of_times(registry, image):
    from aml_core.oci.registry import RETRIES, RegistryError

    RegistryClient(registry).push_image("aml/throttle", image)
    client = RegistryClient(registry)
    seen = _throttled_session(client, times=2)
    assert client.list_tags("aml/throttle") == ["latest"]
    assert seen.count("GET") == 3
    stubborn = RegistryClient(registry)
    seen = _throttled_session(stubborn, times=100)
    with pytest.raises(RegistryError, match="TOOMANYREQUESTS") as info:
        stubborn.list_tags("aml/throttle")
    assert info.value.status == 429 and seen.count("GET") == RETRIES + 1
