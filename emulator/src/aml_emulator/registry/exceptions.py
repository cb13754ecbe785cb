"""Registry errors: one factory, the distribution spec's 14 codes, the spec's JSON body.

Every 4xx the registry sends is built here, so the body is always
``{"errors": [{"code": ..., "message": ..., "detail": ...}]}`` (O14).
"""

from __future__ import annotations

import json
from typing import Any

#: The error codes of the OCI distribution spec v1.1, with the status each one is sent with
#: by default and the spec's message.
SPEC_CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
}


class RegistryError(Exception):
    """An error the registry answers with: a spec code, an HTTP status, a message and detail.

    Build them through :func:`error` so the code is always one of :data:`SPEC_CODES`.
    """

    def __init__(self, code: str, status: int, message: str, detail: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        entry["detail"] = self.detail if self.detail is not None else {}
        return json.dumps({"errors": [entry]}).encode()


def error(code: str, message: str | None = None, *, detail: Any = None, status: int | None = None,
          headers: dict[str, str] | None = None) -> RegistryError:
    """Make the :class:`RegistryError` for a spec ``code`` (unknown codes are a bug: KeyError)."""
    default_status, default_message = SPEC_CODES[code]
    if code == "TOOMANYREQUESTS" and not (headers and "Retry-After" in headers):
        raise ValueError("a TOOMANYREQUESTS error must carry a Retry-After header")
    return RegistryError(code, status or default_status, message or default_message, detail, headers)

