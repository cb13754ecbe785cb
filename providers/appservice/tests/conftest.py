import pytest
from appservice_testing import emulator_with_profile


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """One emulator (registry + ARM) per test module; scripts are cleared after each test."""
    with emulator_with_profile(tmp_path_factory.mktemp("profiles")) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _clear_operation_scripts(request):
    yield
    if "emulator" in request.fixturenames:
        request.getfixturevalue("emulator").arm.clear_operation_scripts()


@pytest.fixture
def ws(emulator, tmp_path):
    from aml_core.workspace import Workspace

    return Workspace.create(tmp_path / "ws", container_registry="profile:emulator")


# -- the contract suite: the module's emulator, a fresh workspace per test ------------------
@pytest.fixture
def aml_workspace(emulator, tmp_path, monkeypatch):
    from aml_core.workspace import Workspace

    # the suite calls scoring URIs with plain requests; a web app's https host has the
    # emulator CA's certificate, which a user trusts the same way
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_bundle))

    return Workspace.create(tmp_path / "workspace", container_registry="profile:emulator")


@pytest.fixture
def aml_target_kind():
    return "appservice"


@pytest.fixture
def aml_deployment_config():
    from aml_provider_appservice import AppServiceWebservice

    # key auth on: the suite's auth contract expects it; the default (off) is tested in test_appservice.py
    return lambda name: AppServiceWebservice.deploy_configuration(auth_enabled=True)
