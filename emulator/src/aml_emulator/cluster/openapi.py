"""The OpenAPI v3 documents kubectl reads before ``apply``: an index at ``/openapi/v3`` and
one document per group-version whose PATCH operations carry
``x-kubernetes-group-version-kind`` and a ``fieldValidation`` query parameter (so kubectl
lets the server validate rather than falling back to ``/openapi/v2``).

The documents carry no object schemas on purpose: kubectl then computes strategic merge
patches from its compiled-in types, which know the real merge keys.
"""

from __future__ import annotations

import hashlib
import json

from aml_emulator.cluster.models import GROUP_VERSIONS, resources_of

_QUERY = ["dryRun", "fieldManager", "fieldValidation", "pretty"]


def gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _params(names: list[str]) -> list[dict]:
    return [{"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True} for n in names]


def gv_document(group: str, version: str) -> dict:
    paths: dict[str, dict] = {}
    base = "/" + gv_path(group, version)
    for rt in resources_of(group, version):
        gvk = {"group": group, "version": version, "kind": rt.kind}
        ns = "/namespaces/{namespace}" if rt.namespaced else ""
        ns_param = [{"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}] if rt.namespaced else []
        name_param = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]

        def op(action: str, verb: str, extra: list[str], sub: str = "", kind: dict = gvk,
               rt_kind: str = rt.kind) -> dict:
            return {"operationId": f"{verb}{rt_kind}{sub}", "x-kubernetes-action": action,
                    "x-kubernetes-group-version-kind": kind, "parameters": _params(extra),
                    "responses": {"200": {"description": "OK"}}}
        paths[f"{base}{ns}/{rt.plural}"] = {
            "get": op("list", "list", ["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "watch"]),
            "post": op("post", "create", _QUERY),
            "parameters": ns_param,
        }
        paths[f"{base}{ns}/{rt.plural}/{{name}}"] = {
            "get": op("get", "read", ["pretty"]),
            "put": op("put", "replace", _QUERY),
            "patch": op("patch", "patch", _QUERY + ["force"]),
            "delete": op("delete", "delete", ["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            "parameters": ns_param + name_param,
        }
        for sub in rt.subresources:
            if sub == "log":
                paths[f"{base}{ns}/{rt.plural}/{{name}}/log"] = {
                    "get": op("get", "read", ["container", "follow", "tailLines", "previous", "timestamps"], "Log"),
                    "parameters": ns_param + name_param}
                continue
            if sub in ("exec", "portforward"):
                options = {"group": "", "version": "v1", "kind": "PodExecOptions" if sub == "exec" else "PodPortForwardOptions"}
                query = ["command", "container", "stdin", "stdout", "stderr", "tty"] if sub == "exec" else ["ports"]
                paths[f"{base}{ns}/{rt.plural}/{{name}}/{sub}"] = {
                    method: op("connect", f"connect{method.title()}", query, sub.title(), options) for method in ("get", "post")
                } | {"parameters": ns_param + name_param}
                continue
            if sub == "token":
                paths[f"{base}{ns}/{rt.plural}/{{name}}/token"] = {
                    "post": op("post", "create", _QUERY, "Token",
                               {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}),
                    "parameters": ns_param + name_param}
                continue
            kind = {"group": "autoscaling", "version": "v1", "kind": "Scale"} if sub == "scale" else gvk
            paths[f"{base}{ns}/{rt.plural}/{{name}}/{sub}"] = {
                "get": op("get", "read", ["pretty"], sub.title(), kind),
                "put": op("put", "replace", _QUERY, sub.title(), kind),
                "patch": op("patch", "patch", _QUERY + ["force"], sub.title(), kind),
                "parameters": ns_param + name_param}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (aml emulator)", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": {}}}


def _hash(doc: dict) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


def index() -> dict:
    paths = {}
    for group, versions in GROUP_VERSIONS.items():
        for v in versions:
            p = gv_path(group, v)
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={_hash(gv_document(group, v))}"}
    return {"paths": paths}


def document_for(path: str) -> dict | None:
    for group, versions in GROUP_VERSIONS.items():
        for v in versions:
            if gv_path(group, v) == path:
                return gv_document(group, v)
    return None
