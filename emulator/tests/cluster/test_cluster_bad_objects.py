"""Objects the real apiserver refuses are refused here too, with its status and reason,
never accepted and never answered with a 500: a body over the 3 MiB request limit, a
ConfigMap over the 1 MiB object limit, ConfigMap data that is not a string, bad data keys,
and nesting deep enough to exhaust a recursive decoder."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cluster_testing import api_request


def _configmap(name: str, data) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def _status(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_a_body_over_three_mebibytes_is_413(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    with pytest.raises(ApiException) as info:
        v1.create_namespaced_config_map("default", _configmap("huge", {"blob": "x" * (3 * 1024 * 1024 + 10)}))
    assert info.value.status == 413
    assert _status(info.value)["reason"] == "RequestEntityTooLarge"
    assert "limit is 3145728" in _status(info.value)["message"]
    assert api_request(cluster, "GET", "/api/v1/namespaces/default/configmaps/huge")[0] == 404


def test_a_configmap_over_one_mebibyte_is_invalid(k8s):
    v1 = client.CoreV1Api(k8s)
    with pytest.raises(ApiException) as info:
        v1.create_namespaced_config_map("default", _configmap("big", {"blob": "x" * (1024 * 1024 + 1)}))
    assert info.value.status == 422
    status = _status(info.value)
    assert status["reason"] == "Invalid"
    assert "Too long: must have at most 1048576 bytes" in status["message"]


@pytest.mark.parametrize("value, go_type", [(1, "number"), (True, "bool"), ({"a": "b"}, "object"), (["a"], "array")])
def test_configmap_data_must_be_strings(cluster, value, go_type):
    code, status = api_request(cluster, "POST", "/api/v1/namespaces/default/configmaps",
                               body=_configmap("typed", {"n": value}))
    assert code == 400, status
    assert status["reason"] == "BadRequest"
    assert (f'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal {go_type} '
            f"into Go struct field ConfigMap.data of type string") in status["message"]
    assert api_request(cluster, "GET", "/api/v1/namespaces/default/configmaps/typed")[0] == 404


def test_a_patch_cannot_sneak_a_non_string_value_in(k8s, cluster):
    client.CoreV1Api(k8s).create_namespaced_config_map("default", _configmap("patched", {"a": "1"}))
    code, status = api_request(cluster, "PATCH", "/api/v1/namespaces/default/configmaps/patched",
                               body={"data": {"a": 2}}, headers={"Content-Type": "application/merge-patch+json"})
    assert code == 400 and "cannot unmarshal number" in status["message"], status
    assert api_request(cluster, "GET", "/api/v1/namespaces/default/configmaps/patched")[1]["data"] == {"a": "1"}


def test_configmap_and_secret_keys_must_be_config_keys(cluster):
    code, status = api_request(cluster, "POST", "/api/v1/namespaces/default/configmaps",
                               body=_configmap("keys", {"../etc": "x"}))
    assert code == 422 and "a valid config key must consist of alphanumeric characters" in status["message"], status
    code, status = api_request(cluster, "POST", "/api/v1/namespaces/default/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a b": "x"}})
    assert code == 422 and "data[a b]" in status["message"], status


def test_secret_data_must_be_base64_strings(cluster):
    code, status = api_request(cluster, "POST", "/api/v1/namespaces/default/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": 5}})
    assert code == 400 and "cannot unmarshal number into Go struct field Secret.data of type []uint8" in status["message"]


@pytest.mark.parametrize("depth", [200, 5000, 100_000])
def test_deep_nesting_is_a_400_and_the_server_keeps_serving(cluster, depth):
    body = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"x":' + b"[" * depth + b"]" * depth + b"}"
    code, status = api_request(cluster, "POST", "/api/v1/namespaces/default/configmaps", body=body)
    assert code == 400, status
    assert status["reason"] == "BadRequest" and "max depth" in status["message"]
    assert api_request(cluster, "GET", "/api/v1/namespaces/default/configmaps")[0] == 200


def test_deep_nesting_in_yaml_is_a_400(cluster):
    body = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\nx: " + "[" * 5000 + "]" * 5000).encode()
    code, status = api_request(cluster, "PATCH", "/api/v1/namespaces/default/configmaps/deep?fieldManager=t",
                               body=body, headers={"Content-Type": "application/apply-patch+yaml"})
    assert code == 400, status
