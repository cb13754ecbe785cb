"""The cluster store keeps Secrets apart from the other objects, sealed with AES-GCM under a
key file, and every state file private from its first byte."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from aml_emulator.cluster.encryption import PREFIX, EncryptionError
from aml_emulator.cluster.models import lookup
from aml_emulator.cluster.store import SECRETS_FILE, Store

CANARY = "canary-3b1f9e0c-not-for-disk"


def _secret(name: str = "creds") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"},
            "type": "Opaque", "data": {"password": base64.b64encode(CANARY.encode()).decode()},
            "stringData": None}


def _configmap() -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"},
            "data": {"mode": "plain"}}


def _make(store: Store) -> None:
    secret = _secret()
    secret.pop("stringData")
    store.create(lookup("", "v1", "secrets"), secret)
    store.create(lookup("", "v1", "configmaps"), _configmap())
    store.save()


def test_secrets_are_sealed_apart_and_come_back_after_a_restart(tmp_path):
    old = os.umask(0o022)
    try:
        state = tmp_path / "cluster"
        _make(Store(state))
    finally:
        os.umask(old)
    plain = (state / "cluster-state.json").read_text()
    assert "settings" in plain and "creds" not in plain
    sealed = (state / SECRETS_FILE).read_bytes()
    assert sealed.startswith(PREFIX)
    assert CANARY.encode() not in sealed and base64.b64encode(CANARY.encode()) not in sealed
    for path in (state, *state.iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is {oct(path.stat().st_mode)}"
    again = Store(state)
    got = again.get(lookup("", "v1", "secrets"), "default", "creds")
    assert base64.b64decode(got["data"]["password"]).decode() == CANARY
    assert again.get(lookup("", "v1", "configmaps"), "default", "settings")["data"] == {"mode": "plain"}


def test_a_key_file_elsewhere_and_a_wrong_key_is_refused_by_name(tmp_path):
    key = tmp_path / "keys" / "cluster.key"
    state = tmp_path / "cluster"
    _make(Store(state, encryption_key_file=key))
    assert not (state / "encryption-key").exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(EncryptionError, match=r"cluster-secrets\.enc does not open with the key in .*encryption-key"):
        Store(state)  # the default key: not the one the Secrets were sealed with
    assert Store(state, encryption_key_file=key).get(lookup("", "v1", "secrets"), "default", "creds")


def test_a_state_file_from_before_the_split_is_read_and_then_sealed(tmp_path):
    state = tmp_path / "cluster"
    state.mkdir()
    secret = _secret()
    secret.pop("stringData")
    secret["metadata"].update(resourceVersion="5", uid="u1", creationTimestamp="2026-01-01T00:00:00Z")
    (state / "cluster-state.json").write_text(json.dumps({
        "format": 1, "rv": 5, "objects": [{**secret, "__key": ["", "secrets"]}], "applyOwners": []}))
    store = Store(state)
    assert store.get(lookup("", "v1", "secrets"), "default", "creds")
    store.save()
    assert CANARY not in (state / "cluster-state.json").read_text()
    assert "creds" not in (state / "cluster-state.json").read_text()
    assert stat.S_IMODE((state / "cluster-state.json").stat().st_mode) == 0o600


def test_the_key_file_can_come_from_the_environment(tmp_path, monkeypatch):
    from aml_emulator.cluster.service import ENCRYPTION_KEY_ENV, ClusterService

    monkeypatch.setenv(ENCRYPTION_KEY_ENV, str(tmp_path / "from-env.key"))
    assert ClusterService(tmp_path / "state").encryption_key_file == tmp_path / "from-env.key"
    assert ClusterService(tmp_path / "state", encryption_key_file=tmp_path / "k").encryption_key_file == tmp_path / "k"
