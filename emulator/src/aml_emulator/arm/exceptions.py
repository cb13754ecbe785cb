"""ARM errors: one factory, Azure's codes, status and message shapes.

Every error body is ``{"error": {"code": ..., "message": ...}}``, as Azure Resource Manager
sends it. Messages never contain a credential.
"""

from __future__ import annotations

from typing import Iterable


class ArmError(Exception):
    """An error the emulated ARM answers with ``status`` and an ARM error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def authentication_failed(reason: str) -> ArmError:
    return ArmError(401, "AuthenticationFailed", f"Authentication failed. {reason}")


def missing_api_version() -> ArmError:
    return ArmError(
        400, "MissingApiVersionParameter",
        "The api-version query parameter (?api-version=) is required for all requests.",
    )


def invalid_api_version(given: str, supported: Iterable[str]) -> ArmError:
    names = ", ".join(supported)
    return ArmError(
        400, "InvalidApiVersionParameter",
        f"The api-version '{given}' is invalid. The supported versions are '{names}'.",
    )


def not_implemented(operation: str) -> ArmError:
    return ArmError(
        501, "NotImplemented", f"The {operation} operation has not been implemented in the emulator",
    )


def subscription_not_found(subscription_id: str) -> ArmError:
    return ArmError(404, "SubscriptionNotFound", f"The subscription '{subscription_id}' could not be found.")


def resource_group_not_found(resource_group: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{resource_group}' could not be found.")


def resource_not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    return ArmError(
        404, "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not "
        f"found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def invalid_request_content(detail: str) -> ArmError:
    return ArmError(400, "InvalidRequestContent", f"The request content was invalid and could not be deserialized: {detail}")


def invalid_parameter(parameter: str, value: object, valid: Iterable[str]) -> ArmError:
    shown = repr(value) if not isinstance(value, str) else f"'{value[:64]}'"
    return ArmError(
        400, "InvalidParameter",
        f"The value {shown} of parameter '{parameter}' is invalid. "
        f"Valid options are: {', '.join(valid)}.",
    )


def request_too_large(limit: int) -> ArmError:
    return ArmError(413, "RequestEntityTooLarge", f"The request body is larger than {limit} bytes.")


def conflict(message: str) -> ArmError:
    """The operation is not allowed in the resource's current state (or the name is taken)."""
    return ArmError(409, "Conflict", message)


def resource_quota_exceeded(message: str) -> ArmError:
    """A quota or per-resource limit would be exceeded (ARM's ``ResourceQuotaExceeded``)."""
    return ArmError(400, "ResourceQuotaExceeded", message)


def invalid_parameter_message(message: str) -> ArmError:
    """``InvalidParameter`` with a message of the resource provider's own wording."""
    return ArmError(400, "InvalidParameter", message)
