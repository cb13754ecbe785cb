"""aml_auth: key auth (get_keys, regen_key) and token auth (get_token), seen from a plain
HTTP client as well as from ``service.run``."""

from __future__ import annotations

import time

import pytest
import requests

from aml_contract_tests.capabilities import requires
from aml_contract_tests.fixtures import SAMPLE_INPUT


def _post(service, credential: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else {}
    return requests.post(service.scoring_uri, json=SAMPLE_INPUT, headers=headers, timeout=60)


@requires("entry_script")
class AuthContract:
    @requires("auth_keys")
    def test_key_auth_is_on_by_default_and_both_keys_work(self, aml_deploy, aml_inference_config):
        service = aml_deploy("contract-keys", aml_inference_config)
        assert service.auth_enabled and not service.token_auth_enabled
        primary, secondary = service.get_keys()
        assert primary and secondary and primary != secondary
        assert _post(service, None).status_code == 401
        assert _post(service, "not-" + primary).status_code == 401
        assert _post(service, primary).status_code == 200
        assert _post(service, secondary).status_code == 200
        assert isinstance(service.run(SAMPLE_INPUT), list)

    @requires("auth_keys")
    def test_regen_key_retires_the_old_key_at_once_and_keeps_the_other(self, aml_deploy, aml_inference_config):
        from aml_core.errors import InvalidConfig

        service = aml_deploy("contract-regen", aml_inference_config)
        old_primary, secondary = service.get_keys()
        service.regen_key("Primary")
        new_primary, same_secondary = service.get_keys()
        assert new_primary != old_primary and same_secondary == secondary
        assert _post(service, old_primary).status_code == 401
        assert _post(service, new_primary).status_code == 200
        assert _post(service, secondary).status_code == 200
        service.regen_key("secondary", set_key="a-key-chosen-by-the-caller-0123")
        assert service.get_keys() == (new_primary, "a-key-chosen-by-the-caller-0123")
        assert _post(service, "a-key-chosen-by-the-caller-0123").status_code == 200
        assert _post(service, secondary).status_code == 401
        with pytest.raises(InvalidConfig, match="Primary, Secondary"):
            service.regen_key("Tertiary")
        # run() holds the old key: it refetches once on 401 and succeeds
        assert isinstance(service.run(SAMPLE_INPUT), list)

    @requires("auth_token")
    def test_token_auth_scores_with_a_fresh_token_and_has_no_keys(
            self, aml_deploy, aml_inference_config, aml_token_auth_deployment_config):
        from aml_core.errors import AuthError

        service = aml_deploy("contract-token", aml_inference_config,
                             config=aml_token_auth_deployment_config("contract-token"))
        assert service.token_auth_enabled and not service.auth_enabled
        token, refresh_after = service.get_token()
        assert token and refresh_after > time.time()
        assert _post(service, None).status_code == 401
        assert _post(service, token + "x").status_code == 401
        assert _post(service, token).status_code == 200
        access = service.get_access_token()
        assert access.expiry_on > access.refresh_after > time.time()
        assert isinstance(service.run(SAMPLE_INPUT), list)
        with pytest.raises(AuthError, match="[Kk]ey auth"):
            service.get_keys()

    @requires("auth_token")
    def test_a_token_for_one_service_does_not_open_another(
            self, aml_deploy, aml_inference_config, aml_token_auth_deployment_config):
        first = aml_deploy("contract-token-a", aml_inference_config,
                           config=aml_token_auth_deployment_config("contract-token-a"))
        second = aml_deploy("contract-token-b", aml_inference_config,
                            config=aml_token_auth_deployment_config("contract-token-b"))
        assert _post(second, first.get_token()[0]).status_code == 401
        assert _post(second, second.get_token()[0]).status_code == 200
