"""``GET /swagger.json``: the service's API document, from inference-schema's schemas.

A ``swagger.json`` / ``swagger2.json`` / ``swagger3.json`` shipped next to the entry script
(or in the app root) wins, as with the Azure server. Otherwise a document is generated when
``run()`` carries inference-schema's ``@input_schema``/``@output_schema``; an undecorated
script has no document (404).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from typing import Any

#: every accepted ``?version=`` value and the document version it selects
VERSION_ALIASES = {"2": "2", "2.0": "2", "3": "3", "3.0": "3", "3.1": "3.1"}


class SwaggerNotFound(Exception):
    """No document for the requested version; the message is the 404 body's ``message``."""


def _error_schema() -> dict:
    return {"type": "object", "properties": {"message": {"type": "string"}}}


def _paths(prefix: str, version: str) -> dict:
    def json_body(ref: str) -> dict:
        if version == "2":
            return {"schema": {"$ref": f"#/definitions/{ref}"}}
        return {
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}
        }

    def text_body(example: str | None = None) -> dict:
        schema: dict[str, Any] = {"type": "string"}
        if version == "2":
            body: dict[str, Any] = {"schema": schema}
            if example is not None:
                body["examples"] = {"application/json": example}
            return body
        if example is not None:
            schema["example"] = example
        return {"content": {"text/plain": {"schema": schema}}}

    failure = {
        "description": "The service failed to execute due to an error.",
        **json_body("ErrorResponse"),
    }
    score_post: dict[str, Any] = {
        "operationId": "RunMLService",
        "description": "Run the web service's model and get the prediction output",
        "security": [{"Bearer": []}],
        "responses": {
            "200": {
                "description": "The service processed the input and returned a result.",
                **json_body("ServiceOutput"),
            },
            "default": failure,
        },
    }
    payload_description = "The input payload for the real-time machine learning service."
    if version == "2":
        score_post["parameters"] = [
            {
                "name": "serviceInputPayload",
                "in": "body",
                "description": payload_description,
                **json_body("ServiceInput"),
            }
        ]
    else:
        score_post["requestBody"] = {
            "description": payload_description,
            **json_body("ServiceInput"),
        }
    version_param: dict[str, Any] = {"name": "version", "in": "query", "required": False}
    enum_schema = {"type": "integer", "enum": [2, 3]}
    if version == "2":
        version_param.update(enum_schema)
    else:
        version_param["schema"] = enum_schema
    return {
        f"{prefix}/": {
            "get": {
                "operationId": "ServiceHealthCheck",
                "description": "Health check: answers 'Healthy' while the service is up.",
                "responses": {
                    "200": {"description": "The service is up.", **text_body("Healthy")},
                    "default": failure,
                },
            }
        },
        f"{prefix}/score": {"post": score_post},
        f"{prefix}/swagger.json": {
            "get": {
                "operationId": "GetSwaggerSpec",
                "description": "Get the Swagger specification.",
                "parameters": [version_param],
                "responses": {
                    "200": {"description": "The Swagger specification.", **text_body()},
                    "default": failure,
                },
            }
        },
    }


def build_document(
    version: str,
    input_schema: Any,
    output_schema: Any,
    *,
    service_name: str = "ML service",
    service_version: str = "1.0",
    path_prefix: str = "",
) -> dict:
    """A Swagger 2.0 or OpenAPI 3.0/3.1 document for a scoring service."""
    prefix = f"/{path_prefix.strip('/')}" if path_prefix.strip("/") else ""
    info = {
        "title": service_name,
        "description": f"API specification for the Azure Machine Learning service {service_name}",
        "version": service_version,
    }
    bearer = {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "description": "For example: Bearer abc123",
    }
    schemas = {
        "ServiceInput": copy.deepcopy(input_schema),
        "ServiceOutput": copy.deepcopy(output_schema),
        "ErrorResponse": _error_schema(),
    }
    if version == "2":
        return {
            "swagger": "2.0",
            "info": info,
            "schemes": ["https"],
            "consumes": ["application/json"],
            "produces": ["application/json"],
            "securityDefinitions": {"Bearer": bearer},
            "paths": _paths(prefix, "2"),
            "definitions": schemas,
        }
    return {
        "openapi": "3.1.0" if version == "3.1" else "3.0.3",
        "info": info,
        "security": [{"Bearer": []}],
        "paths": _paths(prefix, "3"),
        "components": {"schemas": schemas, "securitySchemes": {"Bearer": bearer}},
    }


class SwaggerDocs:
    """The documents a service offers, computed once at start-up."""

    def __init__(self, documents: dict[str, dict]) -> None:
        self._documents = documents  # keyed by "2", "3", "3.1"
        self._encoded = {key: json.dumps(doc).encode("utf-8") for key, doc in documents.items()}

    @classmethod
    def for_script(
        cls,
        run: Callable,
        search_dirs: list[str],
        *,
        service_name: str = "ML service",
        service_version: str = "1.0",
        path_prefix: str = "",
    ) -> SwaggerDocs:
        documents: dict[str, dict] = {}
        user_files = {"2": ("swagger.json", "swagger2.json"), "3": ("swagger3.json",)}
        for version, names in user_files.items():
            found = _read_user_file(search_dirs, names)
            if found is not None:
                documents[version] = found
        generated = _generate(run, service_name, service_version, path_prefix)
        for version, document in generated.items():
            documents.setdefault(version, document)
        return cls(documents)

    @property
    def versions(self) -> list[str]:
        return sorted(self._documents)

    def get(self, requested: str | None) -> bytes:
        """The encoded document for ``?version=`` (default 2); :class:`SwaggerNotFound` if none."""
        requested = "2" if requested is None else requested
        version = VERSION_ALIASES.get(requested)
        supported = ", ".join(self.versions)
        if version is None:
            raise SwaggerNotFound(
                f"Swagger version [{requested}] is not valid. Supported versions: [{supported}]."
            )
        if not self._documents:
            raise SwaggerNotFound(
                "This service has no swagger document: decorate run() with inference-schema's "
                "@input_schema/@output_schema or ship a swagger.json next to the entry script."
            )
        if version not in self._encoded:
            raise SwaggerNotFound(
                f"Swagger version [{requested}] is not supported for the scoring script. "
                f"Supported swagger versions: [{supported}]."
            )
        return self._encoded[version]


def _read_user_file(search_dirs: list[str], names: tuple[str, ...]) -> dict | None:
    for directory in search_dirs:
        if not directory:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    return json.load(handle)
    return None


def _generate(
    run: Callable, service_name: str, service_version: str, prefix: str
) -> dict[str, dict]:
    try:
        from inference_schema.schema_util import (
            get_input_schema,
            get_output_schema,
            get_supported_versions,
            is_schema_decorated,
        )
    except ImportError:
        return {}
    if not is_schema_decorated(run):
        return {}
    supported = set(get_supported_versions(run))
    input_schema = get_input_schema(run)
    output_schema = get_output_schema(run)
    documents = {}
    for version in ("2", "3", "3.1"):
        aliases = {alias for alias, target in VERSION_ALIASES.items() if target == version}
        if supported & aliases:
            documents[version] = build_document(
                version,
                input_schema,
                output_schema,
                service_name=service_name,
                service_version=service_version,
                path_prefix=prefix,
            )
    return documents
