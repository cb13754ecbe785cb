"""The one error factory of the cluster emulator: Kubernetes ``Status`` failures.

Every error the API server returns is an :class:`ApiError` built by one of the functions
below, so reasons and codes match the real apiserver (``NotFound`` 404, ``AlreadyExists``
409, ``Conflict`` 409, ``Invalid`` 422, ...) and kubectl prints
``Error from server (<reason>): <message>``.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A Kubernetes API failure, rendered as a ``Status`` object with an HTTP code."""

    def __init__(self, code: int, reason: str, message: str, *, details: dict | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def _details(name: str | None, group: str, kind: str) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": kind}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    return d


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(group, plural)} "{name}" not found',
                    details=_details(name, group, plural))


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{_qualified(group, plural)} "{name}" already exists',
                    details=_details(name, group, plural))


def conflict(group: str, plural: str, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": {why}',
                    details=_details(name, group, plural))


def apply_conflict(group: str, plural: str, name: str, conflicts: list[tuple[str, str]]) -> ApiError:
    lines = [f'conflict with "{mgr}": {path}' for mgr, path in conflicts]
    msg = f"Apply failed with {len(lines)} conflict{'s' if len(lines) != 1 else ''}: " + "\n".join(lines)
    d = _details(name, group, plural)
    d["causes"] = [{"reason": "FieldManagerConflict", "message": line, "field": p}
                   for line, (_, p) in zip(lines, conflicts)]
    return ApiError(409, "Conflict", msg, details=d)


def invalid(group: str, kind: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """``causes`` is a list of ``(field, message)``."""
    text = ", ".join(f"{f}: {m}" for f, m in causes)
    if len(causes) > 1:  # a Go aggregate error prints as a list
        text = f"[{text}]"
    d = _details(name, group, kind)
    d["causes"] = [{"reason": _cause_reason(m), "message": m, "field": f} for f, m in causes]
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {text}', details=d)


def _cause_reason(message: str) -> str:
    """The ``field.ErrorType`` of a cause, from the start of its message."""
    for prefix, reason in (("Required value", "FieldValueRequired"), ("Unsupported value", "FieldValueNotSupported"),
                           ("Duplicate value", "FieldValueDuplicate"), ("Forbidden", "FieldValueForbidden"),
                           ("Not found", "FieldValueNotFound")):
        if message.startswith(prefix):
            return reason
    return "FieldValueInvalid"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def not_implemented(operation: str) -> ApiError:
    return ApiError(501, "NotImplemented",
                    f"The {operation} operation has not been implemented in the emulator")


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got "{content_type}")')


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(group: str, plural: str, name: str | None, why: str) -> ApiError:
    """``apierrors.NewForbidden``: ``<resource> "<name>" is forbidden: <why>``."""
    if not plural:
        return ApiError(403, "Forbidden", f"forbidden: {why}", details={})
    q = _qualified(group, plural)
    msg = f'{q} "{name}" is forbidden: {why}' if name else f"{q} is forbidden: {why}"
    return ApiError(403, "Forbidden", msg, details=_details(name, group, plural))


def path_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f'the server could not find the requested resource ({path})',
                    details={"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})
