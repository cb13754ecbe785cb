"""Cloud profiles and the static token credential: the core's side of "swap emulator for Azure"."""

from __future__ import annotations

import ast
import json
import stat
import sys
from pathlib import Path

import attrs
import pytest

from aml_core.credentials import LocalAccessToken, StaticTokenCredential
from aml_core.errors import InvalidConfig, NotFound
from aml_core.profiles import AZURE_ARM_ENDPOINT, CloudProfile, profile_path

CANARY = "canary-token-5f1e0c7d"


def _profile(name: str = "emulator", **changes: object) -> CloudProfile:
    values: dict[str, object] = dict(
        name=name,
        arm_endpoint="https://127.0.0.1:50123",
        ca_bundle="/tmp/ca.pem",
        subscription_id="00000000-1111-2222-3333-444444444444",
        resource_group="aml-emulator",
        registry_name="amlemulator",
        registry_login_server="127.0.0.1:50124",
        arm_token=CANARY,
    )
    values.update(changes)
    return CloudProfile(**values)  # type: ignore[arg-type]


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "profiles"
    monkeypatch.setenv("AML_PROFILE_DIR", str(directory))
    monkeypatch.delenv("AML_PROFILE", raising=False)
    return directory


def test_save_then_load_round_trips_every_field(profiles: Path) -> None:
    original = _profile(kubeconfig="/tmp/kubeconfig", extra={"location": "westeurope"})
    path = original.save()
    assert path == profiles / "emulator.json"
    assert CloudProfile.load() == original


def test_saved_file_is_readable_by_owner_only(profiles: Path) -> None:
    path = _profile().save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_replaces_an_existing_profile_atomically(profiles: Path) -> None:
    _profile().save()
    _profile(resource_group="other").save()
    assert CloudProfile.load().resource_group == "other"
    assert [p.name for p in profiles.iterdir()] == ["emulator.json"]


def test_name_comes_from_argument_then_env_then_default(profiles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _profile("emulator").save()
    _profile("staging", resource_group="staging-rg").save()
    _profile("third", resource_group="third-rg").save()
    assert CloudProfile.load().name == "emulator"
    monkeypatch.setenv("AML_PROFILE", "staging")
    assert CloudProfile.load().resource_group == "staging-rg"
    assert CloudProfile.load("third").resource_group == "third-rg"


def test_default_directory_is_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AML_PROFILE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert profile_path("emulator") == tmp_path / ".aml" / "profiles" / "emulator.json"


def test_missing_profile_is_not_found_naming_the_fix(profiles: Path) -> None:
    with pytest.raises(NotFound) as info:
        CloudProfile.load("emulator")
    assert info.value.code == "NotFound"
    assert "aml emulator start" in str(info.value)
    assert "AML_PROFILE" in str(info.value)


def test_malformed_json_is_invalid_config(profiles: Path) -> None:
    profiles.mkdir()
    (profiles / "emulator.json").write_text("{not json")
    with pytest.raises(InvalidConfig) as info:
        CloudProfile.load()
    assert info.value.code == "InvalidConfig"
    assert "not valid JSON" in str(info.value)
    assert "aml emulator start" in str(info.value)


@pytest.mark.parametrize("field", ["arm_endpoint", "subscription_id", "registry_login_server"])
def test_missing_field_is_invalid_config_naming_it(profiles: Path, field: str) -> None:
    data = _profile().to_dict()
    del data[field]
    profiles.mkdir()
    (profiles / "emulator.json").write_text(json.dumps(data))
    with pytest.raises(InvalidConfig, match=field):
        CloudProfile.load()


def test_unknown_field_is_refused_pointing_at_extra(profiles: Path) -> None:
    data = _profile().to_dict() | {"region": "westeurope"}
    with pytest.raises(InvalidConfig, match="region.*extra"):
        CloudProfile.from_dict(data)


def test_profile_from_a_newer_format_is_refused(profiles: Path) -> None:
    data = _profile().to_dict() | {"format": 99}
    with pytest.raises(InvalidConfig, match="newer"):
        CloudProfile.from_dict(data)


def test_file_named_differently_from_its_content_is_refused(profiles: Path) -> None:
    profiles.mkdir()
    (profiles / "emulator.json").write_text(json.dumps(_profile("other").to_dict()))
    with pytest.raises(InvalidConfig, match="named 'other'"):
        CloudProfile.load()


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "", ".hidden"])
def test_profile_names_cannot_escape_the_directory(profiles: Path, bad: str) -> None:
    with pytest.raises(InvalidConfig):
        CloudProfile.load(bad)


def test_endpoint_must_be_a_url() -> None:
    with pytest.raises(InvalidConfig, match="arm_endpoint"):
        _profile(arm_endpoint="127.0.0.1:443")


def test_token_is_not_in_repr_or_str() -> None:
    profile = _profile()
    assert CANARY not in repr(profile)
    assert CANARY not in str(profile)
    assert CANARY not in repr(attrs.evolve(profile, name="other"))


def test_profile_is_frozen_and_hashable() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        _profile().arm_endpoint = "https://elsewhere"  # type: ignore[misc]
    assert hash(_profile(extra={"a": 1})) == hash(_profile(extra={"a": 1}))


def test_azure_profile_shape_has_no_token_and_trusts_the_system_store() -> None:
    azure = _profile(
        "azure", arm_endpoint=AZURE_ARM_ENDPOINT, ca_bundle=None, arm_token=None,
        registry_login_server="myregistry.azurecr.io",
    )
    assert azure.connection_verify is True
    assert azure.arm_token is None
    assert azure.credential_scopes == ["https://management.azure.com/.default"]
    assert CloudProfile.from_dict(azure.to_dict()) == azure


def test_emulator_profile_verifies_against_its_ca_bundle() -> None:
    assert _profile().connection_verify == "/tmp/ca.pem"


# -- StaticTokenCredential -------------------------------------------------------------------


def test_static_credential_returns_token_expiring_after_the_refresh_window() -> None:
    import time

    before = int(time.time())
    token = StaticTokenCredential(CANARY).get_token("https://management.azure.com/.default")
    assert token.token == CANARY
    assert before + 3600 <= token.expires_on <= int(time.time()) + 3600
    token_value, expires_on = token  # namedtuple-compatible
    assert token_value == CANARY


def test_static_credential_is_accepted_by_azure_cores_bearer_policy() -> None:
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.core.rest import HttpRequest

    policy = BearerTokenCredentialPolicy(StaticTokenCredential(CANARY), "https://management.azure.com/.default")
    request = PipelineRequest(HttpRequest("GET", "https://127.0.0.1/"), PipelineContext(None))
    policy.on_request(request)
    assert request.http_request.headers["Authorization"] == f"Bearer {CANARY}"


def test_static_credential_returns_an_access_token_tuple() -> None:
    token = StaticTokenCredential(CANARY, expires_in=600).get_token("scope")
    assert type(token) is LocalAccessToken
    assert token.token == CANARY


def test_static_credential_hides_its_token() -> None:
    credential = StaticTokenCredential(CANARY)
    assert CANARY not in repr(credential)
    assert CANARY not in str(credential)


def test_static_credential_rejects_an_empty_token() -> None:
    with pytest.raises(ValueError):
        StaticTokenCredential("")


def test_core_modules_import_no_azure_sdk_at_module_level() -> None:
    import aml_core.credentials
    import aml_core.profiles

    for module in (aml_core.credentials, aml_core.profiles):
        tree = ast.parse(Path(module.__file__).read_text())
        top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        names = [alias.name for node in top_level if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module or "" for node in top_level if isinstance(node, ast.ImportFrom)]
        assert not [name for name in names if name.startswith(("azure", "aml_emulator"))], module


def test_secret_looking_extra_values_are_hidden_from_repr() -> None:
    profile = CloudProfile(
        name="emulator", arm_endpoint="https://127.0.0.1:1", subscription_id="s", resource_group="g",
        registry_name="r", registry_login_server="127.0.0.1:2",
        extra={"frontdoor_admin_token": CANARY, "frontdoor_url": "http://127.0.0.1:3"},
    )
    assert CANARY not in repr(profile) and CANARY not in str(profile)
    assert "http://127.0.0.1:3" in repr(profile)
    assert profile.extra["frontdoor_admin_token"] == CANARY
