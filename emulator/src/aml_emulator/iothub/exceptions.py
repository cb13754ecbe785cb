"""Errors in IoT Hub's own shape: ``{"Message": "ErrorCode:<Code>;<text>", "ExceptionMessage": ...}``.

That is the body the service returns (the error code is also sent as ``iothub-errorcode``).
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any


class HubError(Exception):
    """An IoT Hub error with its HTTP status and error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%m/%d/%Y %H:%M:%S")
        return {"Message": f"ErrorCode:{self.code};{self.message}",
                "ExceptionMessage": f"Tracking ID:{uuid.uuid4().hex}-G:0-TimeStamp:{stamp}"}


def unauthorized(reason: str) -> HubError:
    # the hub never says why; the reason goes to the emulator's log only
    error = HubError(401, "IotHubUnauthorizedAccess", "Unauthorized")
    error.reason = reason  # type: ignore[attr-defined]
    return error


def device_not_found(device_id: str, hub: str) -> HubError:
    return HubError(404, "DeviceNotFound", f"Device {device_id} not registered on IoT hub {hub}.")


def module_not_found(device_id: str, module_id: str, hub: str) -> HubError:
    return HubError(404, "ModuleNotFound",
                    f"Module {module_id} on device {device_id} not registered on IoT hub {hub}.")


def precondition_failed(what: str) -> HubError:
    return HubError(412, "PreconditionFailed",
                    f"Precondition failed: the {what}'s etag does not match If-Match; read it again and retry, "
                    f"or send If-Match: * to overwrite.")
