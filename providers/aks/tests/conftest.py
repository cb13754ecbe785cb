import pytest
from aks_testing import emulator_with_profile


@pytest.fixture
def emulator(tmp_path):
    """A full emulator (registry, ARM, cluster) and its profile in a private AML_PROFILE_DIR."""
    with emulator_with_profile(tmp_path / "profiles") as emu:
        yield emu


@pytest.fixture
def ws(tmp_path):
    from aml_core.workspace import Workspace

    return Workspace.create(tmp_path / "ws", container_registry="profile:emulator")


# -- the contract modules: one emulator per module, a fresh workspace per test (these override
# the contract suite's aml_workspace and aml_deployment_target; no other test here uses them)
@pytest.fixture(scope="module")
def aks_module_emulator(tmp_path_factory):
    with emulator_with_profile(tmp_path_factory.mktemp("profiles")) as emu:
        yield emu


@pytest.fixture
def aml_workspace(aks_module_emulator, tmp_path):
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
