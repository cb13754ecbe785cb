"""The Emulator object: services, endpoints, credentials, the profile, reset and durable state."""

from __future__ import annotations

import hashlib
import json
import logging
import stat
from pathlib import Path

import pytest
import requests

from aml_core.credentials import StaticTokenCredential
from aml_core.errors import Conflict, InvalidConfig
from aml_core.profiles import CloudProfile
from aml_emulator import Emulator
from aml_emulator.emulator import StateLocked

CORE = ("registry", "arm")


def _push_blob(emu: Emulator, data: bytes, repo: str = "models/demo") -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    auth = (emu.registry.credentials.username, emu.registry.credentials.passwords["password"])
    started = requests.post(f"{emu.registry.url}/v2/{repo}/blobs/uploads/", auth=auth, timeout=10)
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    if location.startswith("/"):
        location = emu.registry.url + location
    separator = "&" if "?" in location else "?"
    done = requests.put(f"{location}{separator}digest={digest}", data=data, auth=auth,
                        headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert done.status_code == 201, done.text
    return digest


def _blob_status(emu: Emulator, digest: str, repo: str = "models/demo") -> int:
    auth = (emu.registry.credentials.username, emu.registry.credentials.passwords["password"])
    return requests.head(f"{emu.registry.url}/v2/{repo}/blobs/{digest}", auth=auth, timeout=10).status_code


def _arm_client(profile: CloudProfile):
    """What a provider does: everything from the profile, nothing emulator-specific."""
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    return ContainerRegistryManagementClient(
        StaticTokenCredential(profile.arm_token), profile.subscription_id,
        base_url=profile.arm_endpoint, credential_scopes=profile.credential_scopes,
        connection_verify=profile.connection_verify, retry_total=0,
    )


def test_every_service_listens_on_loopback_ephemeral_ports() -> None:
    with Emulator() as emu:
        endpoints = emu.endpoints()
        assert set(endpoints) == {"registry", "arm", "cluster"}
        assert endpoints["arm"].startswith("https://127.0.0.1:")
        assert endpoints["registry"].startswith("http://127.0.0.1:")
        assert len({url.rsplit(":", 1)[1] for url in endpoints.values()}) == 3
        assert requests.get(f"{emu.registry.url}/v2/", timeout=10).status_code == 401


def test_a_provider_reaches_arm_and_registry_from_the_profile_alone() -> None:
    with Emulator(services=CORE) as emu:
        profile = emu.profile()
        client = _arm_client(profile)
        registry = client.registries.get(profile.resource_group, profile.registry_name)
        assert registry.login_server == profile.registry_login_server
        credentials = client.registries.list_credentials(profile.resource_group, profile.registry_name)
        password = credentials.passwords[0].value
        response = requests.get(f"http://{registry.login_server}/v2/", auth=(credentials.username, password),
                                timeout=10)
        assert response.status_code == 200


def test_profile_carries_every_endpoint_and_hides_the_token() -> None:
    with Emulator() as emu:
        profile = emu.profile("ci")
        assert profile.name == "ci"
        assert profile.arm_endpoint == emu.arm.url
        assert profile.ca_bundle == str(emu.ca_bundle)
        assert (profile.subscription_id, profile.resource_group, profile.registry_name) == (
            emu.subscription_id, emu.resource_group, emu.registry_name)
        assert profile.registry_login_server == emu.registry.login_server
        assert profile.arm_token == emu.arm_token
        assert profile.kubeconfig == str(emu.cluster.kubeconfig_path)
        assert profile.extra["registry_url"] == emu.registry.url
        assert emu.arm_token not in repr(profile)
        assert emu.arm_token not in repr(emu)


def test_restart_on_the_same_state_keeps_identity_credentials_and_blobs(tmp_path: Path) -> None:
    with Emulator(tmp_path, services=CORE) as emu:
        digest = _push_blob(emu, b"layer bytes that must survive a restart")
        _arm_client(emu.profile()).registries.regenerate_credential(
            emu.resource_group, emu.registry_name, {"name": "password2"})
        before = {
            "subscription": emu.subscription_id, "token": emu.arm_token,
            "passwords": emu.registry.credentials.passwords, "ca": emu.ca_bundle.read_bytes(),
        }
    with Emulator(tmp_path, services=CORE) as emu:
        after = {
            "subscription": emu.subscription_id, "token": emu.arm_token,
            "passwords": emu.registry.credentials.passwords, "ca": emu.ca_bundle.read_bytes(),
        }
        assert after == before
        assert _blob_status(emu, digest) == 200
        listed = _arm_client(emu.profile()).registries.list_credentials(emu.resource_group, emu.registry_name)
        assert {p.name: p.value for p in listed.passwords} == before["passwords"]


def test_secrets_file_is_private(tmp_path: Path) -> None:
    with Emulator(tmp_path, services=CORE):
        assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode) == 0o600


def test_temporary_state_is_removed_on_stop() -> None:
    with Emulator(services=CORE) as emu:
        state = emu.state_dir
        assert state is not None and state.is_dir()
    assert not state.exists()


def test_a_second_emulator_on_the_same_state_is_refused(tmp_path: Path) -> None:
    with Emulator(tmp_path, services=("registry",)):
        with pytest.raises(StateLocked) as info:
            Emulator(tmp_path, services=("registry",)).start()
        assert isinstance(info.value, Conflict)
        assert info.value.code == "Conflict"
        assert "--state" in str(info.value)
    with Emulator(tmp_path, services=("registry",)) as emu:  # the lock went with the first one
        assert emu.registry.url


def test_unknown_services_fail_at_construction() -> None:
    with pytest.raises(InvalidConfig, match="registry, arm, cluster"):
        Emulator(services=("registry", "fpga-typo"))


def test_services_can_be_chosen() -> None:
    with Emulator(services=CORE) as emu:
        assert set(emu.services) == {"registry", "arm"}
        with pytest.raises(RuntimeError, match="not requested"):
            emu.cluster


def test_properties_before_start_say_how_to_fix_it() -> None:
    emu = Emulator(services=CORE)
    with pytest.raises(RuntimeError, match="start"):
        emu.arm_token
    with pytest.raises(RuntimeError, match="start"):
        emu.registry


def test_state_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "emulator.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(InvalidConfig, match="newer"):
        Emulator(tmp_path, services=CORE).start()


def test_reset_empties_the_registry_and_revokes_extra_tokens_only() -> None:
    with Emulator(services=CORE) as emu:
        digest = _push_blob(emu, b"to be reset")
        extra = emu.arm.issue_token()
        emu.reset()
        assert _blob_status(emu, digest) == 404
        url = (f"{emu.arm.url}/subscriptions/{emu.subscription_id}/providers/"
               f"Microsoft.ContainerRegistry/registries?api-version=2025-11-01")
        revoked = requests.get(url, headers={"Authorization": f"Bearer {extra}"},
                               verify=str(emu.ca_bundle), timeout=10)
        assert revoked.status_code == 401
        kept = requests.get(url, headers={"Authorization": f"Bearer {emu.arm_token}"},
                            verify=str(emu.ca_bundle), timeout=10)
        assert kept.status_code == 200


def test_registry_exchanges_the_arm_token_for_a_refresh_token_like_acr() -> None:
    # `az acr login` trades the ARM access token at /oauth2/exchange; a forged one is refused.
    with Emulator(services=CORE) as emu:
        form = {"grant_type": "access_token", "service": emu.registry.login_server}
        ok = requests.post(f"{emu.registry.url}/oauth2/exchange", data=form | {"access_token": emu.arm_token},
                           timeout=10)
        assert ok.status_code == 200 and ok.json()["refresh_token"]
        forged = requests.post(f"{emu.registry.url}/oauth2/exchange", data=form | {"access_token": "forged"},
                               timeout=10)
        assert forged.status_code == 401


def test_no_secret_reaches_logs_reprs_or_non_secret_state(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Emulator(services=CORE) as emu:
        _arm_client(emu.profile()).registries.list_credentials(emu.resource_group, emu.registry_name)
        secrets = [emu.arm_token, *emu.registry.credentials.passwords.values()]
        texts = [caplog.text, repr(emu), repr(emu.registry), repr(emu.arm), repr(emu.profile()),
                 (emu.state_dir / "emulator.json").read_text()]
        texts += [p.read_text() for p in (emu.state_dir / "arm").iterdir() if "key" not in p.name]
    for secret in secrets:
        for text in texts:
            assert secret not in text
