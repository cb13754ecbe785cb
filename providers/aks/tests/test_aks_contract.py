"""The AKS provider against the shared contract suite, on the emulator's cluster."""

import pytest

from aml_contract_tests.suite import *  # noqa: F401,F403


@pytest.fixture(scope="module")
def _aks_emulator(tmp_path_factory):
    import os

    from aml_emulator import Emulator

    profiles = tmp_path_factory.mktemp("profiles")
    saved = os.environ.get("AML_PROFILE_DIR")
    os.environ["AML_PROFILE_DIR"] = str(profiles)
    try:
        with Emulator() as emu:
            profile = emu.profile()
            profile = type(profile).from_dict({**profile.to_dict(), "extra": {**profile.extra, "arm_polling_interval": 0.2}})
            profile.save()
            yield emu
    finally:
        if saved is None:
            os.environ.pop("AML_PROFILE_DIR", None)
        else:
            os.environ["AML_PROFILE_DIR"] = saved


@pytest.fixture
def aml_target_kind():
    return "aks"


@pytest.fixture
def aml_workspace(_aks_emulator, tmp_path):
    from aml_core.workspace import Workspace

    return Workspace.create(tmp_path / "workspace", container_registry="profile:emulator")


@pytest.fixture
def aml_deployment_target(aml_workspace):
    from aml_core.compute import ComputeTarget
    from aml_provider_aks import AksCompute

    target = ComputeTarget.create(aml_workspace, "aks-contract",
                                  AksCompute.provisioning_configuration(cluster_purpose="DevTest", agent_count=1))
    target.wait_for_completion()
    return target


@pytest.fixture
def aml_deployment_config():
    from aml_provider_aks import AksWebservice

    return lambda name: AksWebservice.deploy_configuration(num_replicas=1)


@pytest.fixture
def aml_token_auth_deployment_config():
    from aml_provider_aks import AksWebservice

    return lambda name: AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False, token_auth_enabled=True)
