"""Key auth and TLS inside the scoring server (aml_core.runtime.security), against a real
``serve`` process: what ACI and App Service rely on, having no front door of their own."""

from __future__ import annotations

import pytest
import requests
from aml_runtime_testkit import DIABETES_SCORE, SAMPLE, Server, write_script, write_spec

from aml_core.errors import InvalidConfig
from aml_core.runtime.security import KeyCheck, scoring_keys, tls_context


def _serve(tmp_path, model_dir, env) -> Server:
    entry = write_script(tmp_path / "src", DIABETES_SCORE)
    spec = write_spec(tmp_path, entry, model_dir)
    return Server(tmp_path, ["--spec", str(spec)], env).wait_ready()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, model_dir):
    server = _serve(tmp_path_factory.mktemp("keyed"), model_dir, {"AML_SCORING_KEYS": "key-one,key-two"})
    yield server
    server.stop()


def test_score_without_a_key_is_401_with_a_bearer_challenge(keyed):
    response = requests.post(keyed.url + "/score", json={"data": SAMPLE}, timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "get_keys()" in response.text


@pytest.mark.parametrize("header", ["Bearer nope", "Basic a2V5LW9uZQ==", "Bearer key-one-and-more", "key-one"])
def test_a_wrong_key_or_scheme_is_401(keyed, header):
    response = requests.post(keyed.url + "/score", json={"data": SAMPLE}, headers={"Authorization": header},
                             timeout=10)
    assert response.status_code == 401


@pytest.mark.parametrize("key", ["key-one", "key-two"])
def test_either_key_scores(keyed, key, expected_predictions):
    response = requests.post(keyed.url + "/score", json={"data": SAMPLE},
                             headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 200
    assert response.json() == pytest.approx(expected_predictions)


def test_liveness_and_swagger_stay_open(keyed):
    assert requests.get(keyed.url + "/", timeout=10).status_code == 200
    assert requests.get(keyed.url + "/swagger.json", timeout=10).status_code != 401


def test_keys_can_come_from_a_file(tmp_path, model_dir):
    keys = tmp_path / "keys"
    keys.write_text("from-file\n")
    server = _serve(tmp_path, model_dir, {"AML_SCORING_KEYS_FILE": str(keys)})
    try:
        ok = requests.post(server.url + "/score", json={"data": SAMPLE},
                           headers={"Authorization": "Bearer from-file"}, timeout=10)
        assert ok.status_code == 200
        assert requests.post(server.url + "/score", json={"data": SAMPLE}, timeout=10).status_code == 401
    finally:
        server.stop()


def test_tls_serves_https_with_the_given_certificate(tmp_path, model_dir, expected_predictions):
    from aml_emulator.arm.tls import CertificateAuthority

    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    cert, key = ca.issue_server_cert(tmp_path / "ca", "svc", ("127.0.0.1",))
    server = _serve(tmp_path / "srv", model_dir, {"AML_TLS_CERT_PEM": cert.read_text(),
                                                  "AML_TLS_KEY_PEM": key.read_text()})
    try:
        https = server.url.replace("http://", "https://")
        response = requests.post(https + "/score", json={"data": SAMPLE}, verify=str(ca.cert_path), timeout=10)
        assert response.json() == pytest.approx(expected_predictions)
        with pytest.raises(requests.exceptions.SSLError):  # a client that does not trust the CA
            requests.get(https + "/", timeout=10)
    finally:
        server.stop()


def test_a_bad_certificate_fails_the_start_naming_the_problem(tmp_path, model_dir):
    entry = write_script(tmp_path / "src", DIABETES_SCORE)
    spec = write_spec(tmp_path, entry, model_dir)
    server = Server(tmp_path, ["--spec", str(spec)], {"AML_TLS_CERT_PEM": "not a pem", "AML_TLS_KEY_PEM": "nope"})
    assert server.wait_exit() == 3
    assert "The TLS certificate or key cannot be loaded" in server.log()


def test_key_check_and_settings_units(tmp_path):
    check = KeyCheck(["a1", "b2"])
    assert check.accepts(b"Bearer a1") and check.accepts(b"bearer b2")
    assert not check.accepts(None) and not check.accepts(b"Bearer ") and not check.accepts(b"Bearer a")
    assert scoring_keys({}) == ()
    assert scoring_keys({"AML_SCORING_KEYS": " x , y ,"}) == ("x", "y")
    with pytest.raises(InvalidConfig, match="names no key"):
        scoring_keys({"AML_SCORING_KEYS": " , "})
    with pytest.raises(InvalidConfig, match="cannot be read"):
        scoring_keys({"AML_SCORING_KEYS_FILE": str(tmp_path / "missing")})
    assert tls_context({}) is None
    with pytest.raises(InvalidConfig, match="both"):
        tls_context({"AML_TLS_CERT_FILE": "x"})
