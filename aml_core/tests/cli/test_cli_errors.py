"""Exit statuses and error reporting: one red line, no traceback unless asked for."""

from __future__ import annotations

import pytest

from aml_core import errors
from aml_core.model import Model


def test_usage_error_exits_2(aml):
    result = aml("model", "register", "--path", "x")
    assert result.exit_code == 2
    assert "Missing option '--name'" in result.stderr


def test_unknown_command_exits_2(aml):
    result = aml("modle", "list")
    assert result.exit_code == 2
    assert "No such command" in result.stderr


def test_help_exits_0(aml):
    result = aml("--help")
    assert result.exit_code == 0
    for command in ("workspace", "model", "service", "providers", "plugins"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "error, status",
    [
        (errors.NotFound("gone"), 3),
        (errors.Conflict("taken"), 4),
        (errors.NotSupported("local", "scale"), 5),
        (errors.InvalidConfig("bad"), 6),
        (errors.AuthError("who"), 7),
        (errors.QuotaExceeded("full"), 8),
        (errors.ProvisioningFailed("broke"), 9),
        (errors.DeploymentTimeout("slow"), 10),
        (errors.NoProviderError("aks", ["local"]), 11),
        (errors.WebserviceException("500"), 12),
    ],
)
def test_aml_errors_exit_with_their_status(aml, monkeypatch, error, status):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(Model, "list", staticmethod(fail))
    result = aml("model", "list")
    assert result.exit_code == status == error.exit_status
    assert result.stderr == f"Error ({error.code}): {error}\n"
    assert result.stdout == ""


def test_multi_line_message_is_reported_on_one_line(aml, monkeypatch):
    def fail(*args, **kwargs):
        raise errors.WebserviceException("Received bad response.\nResponse Code: 502\nContent: b'oops'")

    monkeypatch.setattr(Model, "list", staticmethod(fail))
    result = aml("model", "list")
    assert result.exit_code == 12
    assert result.stderr == "Error (WebserviceError): Received bad response. Response Code: 502 Content: b'oops'\n"


def _boom(*args, **kwargs):
    raise RuntimeError("boom")


def test_unexpected_exception_exits_1_and_points_to_debug(aml, monkeypatch):
    monkeypatch.setattr(Model, "list", staticmethod(_boom))
    result = aml("model", "list")
    assert result.exit_code == 1
    assert "Unexpected error: RuntimeError: boom" in result.stderr
    assert "--debug" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(aml, monkeypatch, how):
    monkeypatch.setattr(Model, "list", staticmethod(_boom))
    if how == "flag":
        result = aml("--debug", "model", "list")
    else:
        result = aml("model", "list", env={"AML_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: boom" in result.stderr


def test_debug_traceback_for_aml_errors_keeps_the_exit_status(aml):
    result = aml("--debug", "model", "show", "ghost")
    assert result.exit_code == 3
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("See `aml model list`.")


def test_keyboard_interrupt_exits_130(aml, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Model, "list", staticmethod(interrupt))
    assert aml("model", "list").exit_code == 130
