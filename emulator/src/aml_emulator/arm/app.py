"""The ARM ASGI app: bearer auth, api-version check, routing to resource providers, errors.

Order of checks, as Azure Resource Manager does it: authentication (401), then the URL
(501 for anything the emulator does not implement), then ``api-version`` (400), then the
subscription and resource group (404), then the operation itself.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from aml_emulator.arm import containerinstance, containerregistry, exceptions, managedclusters
from aml_emulator.arm import web
from aml_emulator.arm import iothubs
from aml_emulator.arm import servicebus as arm_servicebus
from aml_emulator.arm.models import ArmBackend
from aml_emulator.arm.router import ArmRequest, ArmResponse, ArmRouter, ResourceProvider, parse_path

log = logging.getLogger(__name__)

#: Every resource provider the emulator serves. Add new namespaces here.
PROVIDERS: list[ResourceProvider] = [containerregistry.PROVIDER, managedclusters.PROVIDER]
PROVIDERS.append(__import__("aml_emulator.arm.resourcegroups", fromlist=["PROVIDER"]).PROVIDER)
PROVIDERS.append(containerinstance.PROVIDER)
PROVIDERS.append(web.PROVIDER)
PROVIDERS.append(iothubs.PROVIDER)
PROVIDERS.append(arm_servicebus.PROVIDER)

#: ARM request bodies here are small JSON documents; anything bigger is refused unread
MAX_BODY = 1 << 20
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9\-]{1,100}$")
_CHALLENGE = (
    'Bearer authorization_uri="https://login.microsoftonline.com/common", '
    'error="invalid_token", error_description="The access token is missing or invalid."'
)


def _json(status: int, payload: Any, headers: dict[str, str]) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")), status_code=status,
        media_type="application/json; charset=utf-8", headers=headers,
    )


class ArmApp:
    """An ASGI app serving the resource providers in :data:`PROVIDERS` over ``backend``.

    :param loose: skip the api-version check (Azurite's ``--skipApiVersionCheck``). It relaxes
        nothing else: unimplemented operations still answer 501.
    """

    def __init__(self, backend: ArmBackend, *, providers: list[ResourceProvider] | None = None,
                 loose: bool = False) -> None:
        self.backend = backend
        self.router = ArmRouter(providers if providers is not None else PROVIDERS)
        self.loose = loose

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        headers = self._response_headers(request)
        try:
            payload = await self._handle(request)
            if isinstance(payload, ArmResponse):
                headers.update(payload.headers)
                if payload.status == 204:
                    response = Response(status_code=204, headers=headers)
                else:
                    response = _json(payload.status, payload.payload, headers)
            else:
                response = _json(200, payload, headers)
        except exceptions.ArmError as error:
            if error.status == 401:
                headers["WWW-Authenticate"] = _CHALLENGE
            response = _json(error.status, error.body(), headers)
        except Exception:  # a bug in the emulator: say so in ARM's shape, log the traceback
            log.exception("ARM emulator failed on %s %s", request.method, request.url.path)
            response = _json(500, {"error": {"code": "InternalServerError",
                                             "message": "The emulator failed; see its log."}}, headers)
        await response(scope, receive, send)

    @staticmethod
    def _response_headers(request: Request) -> dict[str, str]:
        request_id = str(uuid.uuid4())
        client_id = request.headers.get("x-ms-client-request-id", "")
        headers = {"x-ms-request-id": request_id, "x-ms-correlation-request-id": request_id}
        # echo the client's id only when it is harmless (no CR/LF, bounded length)
        if _CLIENT_REQUEST_ID.match(client_id):
            headers["x-ms-client-request-id"] = client_id
        return headers

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization")
        if header is None:
            raise exceptions.authentication_failed("The 'Authorization' header is missing.")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise exceptions.authentication_failed(
                "The 'Authorization' header is not in the expected 'Bearer <token>' format."
            )
        if not self.backend.tokens.accepts(token.strip()):
            raise exceptions.authentication_failed(
                "The access token is invalid: it was not issued by this emulator."
            )

    @staticmethod
    async def _read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise exceptions.request_too_large(MAX_BODY)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise exceptions.request_too_large(MAX_BODY)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _handle(self, request: Request) -> Any:
        self._authenticate(request)
        method = request.method.upper()
        path = parse_path(method, request.url.path)
        if path is None:
            raise exceptions.not_implemented(f"{method} {request.url.path[:200]}")
        provider = self.router.provider(path.namespace)
        operation_name = path.operation_name(method)
        if provider is None:
            raise exceptions.not_implemented(operation_name)
        api_version = request.query_params.get("api-version")
        if not api_version:
            raise exceptions.missing_api_version()
        if not self.loose and not provider.api_versions.accepts(api_version):
            raise exceptions.invalid_api_version(api_version[:40], provider.api_versions.describe())
        handler = provider.find(method, path)
        if handler is None:
            raise exceptions.not_implemented(operation_name)
        subscription = self.backend.subscription(path.subscription_id)
        if subscription is None:
            raise exceptions.subscription_not_found(path.subscription_id)
        if path.resource_group is not None and subscription.group(path.resource_group) is None:
            raise exceptions.resource_group_not_found(path.resource_group)
        body = await self._read_body(request)
        arm_request = ArmRequest(
            method=method, path=path, api_version=api_version,
            query=dict(request.query_params), body=body, backend=self.backend,
            base_url=f"{request.url.scheme}://{request.url.netloc}",
        )
        return await handler(arm_request)
