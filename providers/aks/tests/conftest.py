import pytest


@pytest.fixture
def emulator(tmp_path, monkeypatch):
    """A full emulator (registry, ARM, cluster) and its profile in a private AML_PROFILE_DIR."""
    from aml_emulator import Emulator

    monkeypatch.setenv("AML_PROFILE_DIR", str(tmp_path / "profiles"))
    with Emulator() as emu:
        profile = emu.profile()
        profile = type(profile).from_dict({**profile.to_dict(), "extra": {**profile.extra, "arm_polling_interval": 0.2}})
        profile.save()
        yield emu


@pytest.fixture
def ws(tmp_path):
    from aml_core.workspace import Workspace

    return Workspace.create(tmp_path / "ws", container_registry="profile:emulator")


# -- shared by the contract modules: one emulator per module, a fresh workspace per test
@pytest.fixture(scope="module")
def aks_module_emulator(tmp_path_factory):
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
def aks_workspace(aks_module_emulator, tmp_path):
    from aml_core.workspace import Workspace

    return Workspace.create(tmp_path / "workspace", container_registry="profile:emulator")


@pytest.fixture
def aks_target(aks_workspace):
    from aml_core.compute import ComputeTarget
    from aml_provider_aks import AksCompute

    target = ComputeTarget.create(aks_workspace, "aks-contract",
                                  AksCompute.provisioning_configuration(cluster_purpose="DevTest", agent_count=1))
    target.wait_for_completion()
    return target
