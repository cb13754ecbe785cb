import os

import pytest


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """One emulator (registry, ARM, storage, Service Bus) per test module, its profile saved for the providers."""
    from aml_emulator import Emulator

    saved = os.environ.get("AML_PROFILE_DIR")
    os.environ["AML_PROFILE_DIR"] = str(tmp_path_factory.mktemp("profiles"))
    try:
        with Emulator(services=["registry", "arm", "storage", "servicebus"], arm_retry_after=0.1) as emu:
            emu.profile().save()
            yield emu
    finally:
        if saved is None:
            os.environ.pop("AML_PROFILE_DIR", None)
        else:
            os.environ["AML_PROFILE_DIR"] = saved


# -- the contract suite: the module's emulator, a fresh workspace per test ------------------
@pytest.fixture
def aml_workspace(emulator, tmp_path, monkeypatch):
    from aml_core.workspace import Workspace

    # the suite calls the https scoring URI with plain requests, as a user who trusts the
    # emulator's CA (the function app's certificate is signed by it) would
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_bundle))

    return Workspace.create(tmp_path / "workspace", container_registry="profile:emulator")


@pytest.fixture
def aml_target_kind():
    return "functions"


@pytest.fixture
def aml_deployment_config():
    from aml_provider_functions import FunctionsWebservice

    # an anonymous HTTP function: the suite's requests carry no Functions key
    return lambda name: FunctionsWebservice.deploy_configuration(trigger="http")
