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
