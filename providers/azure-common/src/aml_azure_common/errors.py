"""Azure SDK errors → :mod:`aml_core.errors`, by ARM error code first, then HTTP status.

Use :func:`arm_errors` around SDK calls (it re-raises with ``raise ... from exc``, so the
Azure error stays visible as ``__cause__``), or :func:`translate` where you raise yourself.
An :class:`~aml_core.errors.AmlError` raised inside passes through untouched.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from aml_core.errors import (
    AmlError, AuthError, Conflict, InvalidConfig, NotFound, ProvisioningFailed, QuotaExceeded,
)

#: ARM error codes and the core error each one means (codes compared case-insensitively)
CODE_MAP: dict[str, type[AmlError]] = {
    "resourcenotfound": NotFound,
    "resourcegroupnotfound": NotFound,
    "parentresourcenotfound": NotFound,
    "notfound": NotFound,
    "subscriptionnotfound": NotFound,
    "conflict": Conflict,
    "resourceexists": Conflict,
    "dnsnamelabelnotavailable": Conflict,
    "operationnotallowed": Conflict,
    "resourcequotaexceeded": QuotaExceeded,
    "quotaexceeded": QuotaExceeded,
    "containergroupquotareached": QuotaExceeded,
    "invalidparameter": InvalidConfig,
    "invalidrequestcontent": InvalidConfig,
    "badrequest": InvalidConfig,
    "locationrequired": InvalidConfig,
    "authenticationfailed": AuthError,
    "authorizationfailed": AuthError,
    "invalidauthenticationtoken": AuthError,
}
STATUS_MAP: dict[int, type[AmlError]] = {401: AuthError, 403: AuthError, 404: NotFound, 409: Conflict}

_AUTH_FIX = "Check the cloud profile's credentials (`aml emulator start` rewrites the emulator's profile)."


def _code_and_message(exc: BaseException) -> tuple[str, str, int | None]:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or ""
    message = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return str(code), str(message), status if isinstance(status, int) else None


def translate(exc: BaseException, what: str, *, fix: str = "") -> AmlError:
    """The :class:`~aml_core.errors.AmlError` for ``exc``, raised while doing ``what``.

    The message is ``"<what>: <ARM message> (<code>)"`` plus ``fix``; raise it with
    ``raise translate(exc, what) from exc``.
    """
    if isinstance(exc, AmlError):
        return exc
    code, message, status = _code_and_message(exc)
    cls = CODE_MAP.get(code.lower())
    if cls is None and status is not None:
        cls = STATUS_MAP.get(status)
    if cls is None:
        from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

        if isinstance(exc, ClientAuthenticationError):
            cls = AuthError
        elif isinstance(exc, ServiceRequestError):
            cls = ProvisioningFailed
            fix = fix or "Is the ARM endpoint of the cloud profile reachable (`aml emulator status`)?"
        else:
            cls = ProvisioningFailed
    if cls is AuthError and not fix:
        fix = _AUTH_FIX
    text = f"{what}: {message}" + (f" ({code})" if code and code not in message else "")
    if fix:
        text = f"{text}. {fix}" if not text.endswith(".") else f"{text} {fix}"
    return cls(text)


@contextlib.contextmanager
def arm_errors(what: str, *, fix: str = "") -> Iterator[None]:
    """Translate any Azure SDK error raised inside into an ``aml_core`` error (``from exc``)."""
    try:
        yield
    except AmlError:
        raise
    except Exception as exc:
        from azure.core.exceptions import AzureError

        if not isinstance(exc, AzureError):
            raise
        raise translate(exc, what, fix=fix) from exc
