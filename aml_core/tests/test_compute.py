"""ComputeTarget: create/attach through aml_provision, the computes table, detach/delete
through aml_compute_delete, with a fake provider on a private plugin manager."""

from __future__ import annotations

import types

import attrs
import pytest

from aml_core import Capabilities, TargetKind, hookimpl
from aml_core.compute import ComputeTarget
from aml_core.errors import Conflict, InvalidConfig, NoProviderError, NotFound, ProvisioningFailed
from aml_core.plugins import Hooks, get_plugin_manager
from aml_core.records import ComputeRecord
from aml_core.workspace import Workspace


@attrs.frozen
class FakeConfig:
    kind = "fakecompute"
    fail: bool = False


def _provider(calls: list):
    module = types.ModuleType("fake_compute_provider")

    @hookimpl
    def aml_target_kinds(add):
        add(TargetKind(name="fakecompute", provider="fake", capabilities=Capabilities(provision=True)))

    @hookimpl
    def aml_provision(workspace, request):
        if request.kind != "fakecompute":
            return None
        calls.append(("provision", request.name, request.attach))
        if request.config.fail:
            raise ProvisioningFailed("quota exhausted in westus")
        return ComputeRecord(name=request.name, kind="fakecompute", provisioning_state="Succeeded",
                             details={"attached": request.attach})

    @hookimpl
    def aml_compute_delete(workspace, compute, detach):
        if compute.kind != "fakecompute":
            return None
        calls.append(("delete", compute.name, detach))
        return True

    module.aml_target_kinds, module.aml_provision, module.aml_compute_delete = (
        aml_target_kinds, aml_provision, aml_compute_delete)
    return module


@pytest.fixture
def calls(monkeypatch):
    import aml_core.compute as compute

    made: list = []
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(_provider(made))
    hooks = Hooks(pm)
    monkeypatch.setattr(compute, "default_hooks", lambda: hooks)
    return made


@pytest.fixture
def ws(tmp_path):
    return Workspace.create(tmp_path / "ws")


def test_create_stores_the_compute_and_finds_it_again(calls, ws):
    target = ComputeTarget.create(ws, "aks1", FakeConfig())
    target.wait_for_completion()
    assert target.provisioning_state == "Succeeded"
    again = ComputeTarget(ws, "aks1")
    assert again.type == "fakecompute" and again.provisioning_state == "Succeeded"
    assert [c.name for c in ComputeTarget.list(ws)] == ["aks1"]
    assert calls == [("provision", "aks1", False)]


def test_a_taken_name_is_a_conflict(calls, ws):
    ComputeTarget.attach(ws, "aks1", FakeConfig()).wait_for_completion()
    with pytest.raises(Conflict) as info:
        ComputeTarget.create(ws, "aks1", FakeConfig())
    assert info.value.code == "Conflict"


def test_a_failed_provisioning_raises_with_its_errors_and_is_recorded(calls, ws):
    target = ComputeTarget.create(ws, "bad1", FakeConfig(fail=True))
    with pytest.raises(ProvisioningFailed, match="quota exhausted"):
        target.wait_for_completion()
    stored = ComputeTarget(ws, "bad1")
    assert stored.provisioning_state == "Failed"
    assert stored.provisioning_errors == ["quota exhausted in westus"]


def test_detach_and_delete_go_through_the_hook_and_forget_the_compute(calls, ws):
    ComputeTarget.attach(ws, "one", FakeConfig()).wait_for_completion()
    ComputeTarget.create(ws, "two", FakeConfig()).wait_for_completion()
    ComputeTarget(ws, "one").detach()
    ComputeTarget(ws, "two").delete()
    assert ("delete", "one", True) in calls and ("delete", "two", False) in calls
    with pytest.raises(NotFound):
        ComputeTarget(ws, "one")
    assert ComputeTarget.list(ws) == []


def test_bad_names_and_configs_are_refused(calls, ws):
    with pytest.raises(InvalidConfig, match="compute name"):
        ComputeTarget.create(ws, "1-bad_name", FakeConfig())
    with pytest.raises(InvalidConfig, match="no kind"):
        ComputeTarget.create(ws, "okname", object())


def test_a_kind_nobody_serves_names_the_missing_provider(calls, ws):
    @attrs.frozen
    class Other:
        kind = "fakecompute2"

    with pytest.raises(NoProviderError, match="fakecompute2"):
        ComputeTarget.create(ws, "okname", Other())
    assert ComputeTarget.list(ws) == []
