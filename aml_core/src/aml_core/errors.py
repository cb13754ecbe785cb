"""Errors raised by the core and by providers.

Every error carries a stable ``code`` (for programs and the CLI's exit status) and a message
that names what is wrong and how to fix it. Providers translate SDK errors into these
classes with ``raise ... from exc`` so callers never see a provider's private exceptions.
"""

from __future__ import annotations


class AmlError(Exception):
    """Base class of every error this framework raises on purpose."""

    code = "AmlError"
    #: process exit status the CLI uses for this class of error
    exit_status = 1


class NotFound(AmlError):
    """A model, image, service, compute target or provider object does not exist."""

    code = "NotFound"
    exit_status = 3


class Conflict(AmlError):
    """The name is taken, the object is in use, or another operation is in flight."""

    code = "Conflict"
    exit_status = 4


class NotSupported(AmlError):
    """The target does not offer this operation (its provider lacks the capability)."""

    code = "NotSupported"
    exit_status = 5

    def __init__(self, target: str, operation: str, hint: str = "") -> None:
        self.target = target
        self.operation = operation
        message = f"The {target!r} target does not support {operation}."
        super().__init__(f"{message} {hint}".strip())


class InvalidConfig(AmlError):
    """An argument, configuration file, entry script or environment is malformed."""

    code = "InvalidConfig"
    exit_status = 6


class AuthError(AmlError):
    """Credentials are missing, wrong or expired."""

    code = "AuthError"
    exit_status = 7


class QuotaExceeded(AmlError):
    """A limit was reached (versions per endpoint, replicas, body size ...)."""

    code = "QuotaExceeded"
    exit_status = 8


class ProvisioningFailed(AmlError):
    """Provisioning compute or deploying a service failed; the message says where to look."""

    code = "ProvisioningFailed"
    exit_status = 9

    def __init__(self, message: str, record: object = None) -> None:
        super().__init__(message)
        #: the failed ServiceRecord, when the provider kept something to inspect (logs)
        self.record = record


class DeploymentTimeout(AmlError):
    """A long operation did not finish in the time allowed."""

    code = "DeploymentTimeout"
    exit_status = 10


class NoProviderError(AmlError):
    """No installed provider serves the requested target kind."""

    code = "NoProvider"
    exit_status = 11

    def __init__(self, kind: str, installed: list[str]) -> None:
        self.kind = kind
        names = ", ".join(sorted(installed)) or "none"
        super().__init__(
            f"No installed provider serves the target kind {kind!r} (installed: {names}). "
            f"Install one with: pip install aml-provider-{kind}"
        )


class WebserviceException(AmlError):
    """A scoring call failed; the message quotes status, headers and body (as azureml-core)."""

    code = "WebserviceError"
    exit_status = 12


class WorkspaceDamaged(InvalidConfig):
    """The workspace's index (``aml.db``) is missing, damaged or not this workspace's.

    Nothing is changed on disk; the message names the file and the recovery
    (``aml workspace check``, ``aml workspace restore``).
    """

    code = "WorkspaceDamaged"
