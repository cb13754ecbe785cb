"""The Kubernetes API server, as a raw ASGI application.

Serves discovery (legacy ``/api``, ``/apis``, per group-version resource lists), OpenAPI v3,
and for every resource in :mod:`models` the verbs get, list, watch, create, update, patch
(four content types), delete and deletecollection, plus the ``status``, ``scale`` and
``log`` subresources. Errors are ``Status`` objects from :mod:`exceptions`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qs

import yaml

from aml_emulator.cluster import (
    admission,
    apiregistration,
    conversion,
    fields,
    metrics,
    openapi,
    protobuf,
    strategies,
    streaming,
    tables,
)
from aml_emulator.cluster import auth as authn
from aml_emulator.cluster import exceptions as err
from aml_emulator.cluster import patch as patchlib
from aml_emulator.cluster.models import (
    GROUP_VERSIONS,
    ResourceType,
    is_terminating,
    lookup,
    now_rfc3339,
    resources_of,
)
from aml_emulator.cluster.rbac import Attributes, Authorizer
from aml_emulator.cluster.selectors import (
    parse_field_selector,
    parse_label_selector,
    selector_to_string,
)
from aml_emulator.cluster.store import Event, Store

#: the apiserver's own request body limit (``MaxRequestBodyBytes``, 3 MiB)
MAX_BODY = 3 * 1024 * 1024
#: nesting deeper than this is refused as undecodable. The apiserver's decoder allows 10000;
#: ours stays far below Python's recursion limit, since objects are copied and merged
#: recursively (real objects are a few dozen levels deep at most)
MAX_DEPTH = 100
SERVER_VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-aml-emulator",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
    "platform": "linux/amd64",
}
NS = lookup("", "v1", "namespaces")
PODS = lookup("", "v1", "pods")
SERVICEACCOUNTS = lookup("", "v1", "serviceaccounts")
SECRETS = lookup("", "v1", "secrets")
#: TokenRequest.spec.expirationSeconds: the default, and the bounds the apiserver enforces
TOKEN_DEFAULT_SECONDS = 3600
TOKEN_MIN_SECONDS = 600
# Real subresources the emulator knows of but does not serve: a 501 that names them.
UNIMPLEMENTED_SUBRESOURCES = {
    ("pods", "attach"), ("pods", "proxy"),
    ("pods", "eviction"), ("pods", "binding"), ("pods", "ephemeralcontainers"), ("pods", "resize"),
    ("services", "proxy"), ("nodes", "proxy"), ("namespaces", "finalize"),
}



#: kinds whose DELETE returns the deleted object rather than a Status
RETURNS_DELETED_OBJECT = frozenset({"services", "pods"})

class LogSource(Protocol):
    """What the API server needs from the kubelet to serve ``pods/log``."""

    def read_logs(self, namespace: str, pod: str, container: str, *, previous: bool = False) -> bytes | None: ...

    def container_running(self, namespace: str, pod: str, container: str) -> bool: ...


class Request:
    def __init__(self, scope: dict, receive: Callable[[], Awaitable[dict]]) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True).items()}
        self.headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        self.user: authn.UserInfo | None = None

    def header_values(self, name: str) -> list[str]:
        """Every value of a header that may repeat (``Impersonate-Group``)."""
        return [v.decode() for k, v in self.scope.get("headers", []) if k.decode().lower() == name]

    async def body(self) -> bytes:
        chunks, size = [], 0
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                break
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise err.ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}")
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
        return b"".join(chunks)

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("true", "1")

    @property
    def wants_table(self) -> bool:
        return "as=table" in self.headers.get("accept", "").lower().replace(" ", "")


def _within_depth(value: Any) -> Any:
    """``value``, if no list or object in it is nested deeper than :data:`MAX_DEPTH`
    (checked without recursion, so the check itself cannot run out of stack)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise err.bad_request(f"the body of the request could not be decoded: exceeded max depth of {MAX_DEPTH}")
        stack.extend((child, depth + 1) for child in children)
    return value


async def _send_json(send: Callable, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
            (b"cache-control", b"no-cache, private")]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": code, "headers": hdrs})
    await send({"type": "http.response.body", "body": data})


def _int_param(req: Request, name: str) -> int | None:
    v = req.query.get(name)
    if v in (None, ""):
        return None
    try:
        return int(v)
    except ValueError:
        raise err.bad_request(f"invalid value for {name}: {v!r}, must be an integer")


class ClusterAPI:
    """The ASGI app. Every request carries a bearer token: ``token`` (the admin,
    ``system:masters``) or a service-account token signed by ``tokens``, authorized by RBAC."""

    def __init__(self, store: Store, token: str, *, logs: LogSource | None = None,
                 bookmark_interval: float = 5.0, tokens: authn.TokenIssuer | None = None) -> None:
        self.store = store
        self.token = token
        self.logs = logs
        self.bookmark_interval = bookmark_interval
        self.tokens = tokens
        self.authorizer = Authorizer(store)
        self._closed = False
        # pods/exec and pods/portforward, and the metrics.k8s.io API (ResourceMeter, set by the ClusterService)
        self.streaming = streaming.Streaming(self, getattr(logs, "running_container", None))
        self.metrics: Any = None

    def shutdown(self) -> None:
        """End every open watch and log stream (called before the server stops)."""
        self._closed = True
        self.streaming.shutdown()

    # ------------------------------------------------------------------ ASGI entry
    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "websocket":
            return await self.streaming.websocket(scope, receive, send)
        if scope["type"] != "http":
            return
        req = Request(scope, receive)
        try:
            req.user = self._authenticate(req)
            if req.user is None:
                raise err.unauthorized()
            self._impersonate(req)
            await self._route(req, send)
        except err.ApiError as e:
            await _send_json(send, e.code, e.status(), e.headers)
        except Exception as e:  # pragma: no cover - a bug, reported as the apiserver would
            await _send_json(send, 500, err.ApiError(500, "InternalError", f"Internal error occurred: {type(e).__name__}: {e}").status())

    def _authenticate(self, req: Request) -> authn.UserInfo | None:
        auth = req.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        presented = auth[7:].strip()
        if hmac.compare_digest(presented.encode(), self.token.encode()):
            return authn.ADMIN
        return self.service_account_user(presented)

    def service_account_user(self, token: str) -> authn.UserInfo | None:
        """The identity of a service-account token, or None (expired, foreign, or its
        service account or bound pod is gone, or was recreated with another uid)."""
        claims = self.tokens.verify(token) if self.tokens is not None else None
        if claims is None:
            return None
        ns, name, sa_uid, bound = authn.identity_of(claims)
        sa = self.store.try_get(SERVICEACCOUNTS, ns, name)
        if sa is None or sa["metadata"].get("uid") != sa_uid or is_terminating(sa):
            return None
        if bound is not None:
            rt = PODS if bound["kind"] == "Pod" else SECRETS
            obj = self.store.try_get(rt, ns, bound["name"])
            if obj is None or obj["metadata"].get("uid") != bound["uid"]:
                return None
        return authn.UserInfo(authn.service_account_username(ns, name), authn.service_account_groups(ns), sa_uid)

    def _impersonate(self, req: Request) -> None:
        """``Impersonate-User`` / ``Impersonate-Group`` (``kubectl --as``, ``--as-group``):
        the caller must be allowed to ``impersonate`` them; the request then runs as them."""
        user = req.headers.get("impersonate-user")
        groups = req.header_values("impersonate-group")
        if not user:
            if groups:
                raise err.bad_request("requested [Impersonate-Group] without impersonating a user")
            return
        real = req.user
        assert real is not None
        sa = authn.split_service_account(user)
        if sa is not None:
            self.authorizer.check(real, Attributes("impersonate", "serviceaccounts", "", name=sa[1], namespace=sa[0]))
        else:
            self.authorizer.check(real, Attributes("impersonate", "users", "", name=user))
        for g in groups:
            self.authorizer.check(real, Attributes("impersonate", "groups", "", name=g))
        if sa is not None and not groups:
            groups = list(authn.service_account_groups(sa[0]))
        if "system:authenticated" not in groups and user != "system:anonymous":
            groups.append("system:authenticated")
        req.user = authn.UserInfo(user, tuple(groups))

    async def _route(self, req: Request, send: Callable) -> None:
        path = req.path.rstrip("/") or "/"
        if path == "/version":
            return await _send_json(send, 200, SERVER_VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            return await send({"type": "http.response.body", "body": b"ok"})
        if path == "/api":
            return await _send_json(send, 200, {"kind": "APIVersions", "versions": ["v1"],
                                                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
        if path == "/apis":
            return await _send_json(send, 200, {"kind": "APIGroupList", "apiVersion": "v1",
                                                "groups": [self._group(g) for g in GROUP_VERSIONS if g]
                                                + [apiregistration.group(), metrics.group()]})
        if path.startswith("/openapi"):
            return await self._openapi(path, send)
        if path == "/apis/metrics.k8s.io" or path.startswith("/apis/metrics.k8s.io/"):
            # reading the processes takes a while: not on the serving loop
            return await _send_json(send, *await asyncio.get_running_loop().run_in_executor(
                None, metrics.handle, self, self.metrics, req, path))
        if path == "/apis/apiregistration.k8s.io" or path.startswith("/apis/apiregistration.k8s.io/"):
            return await _send_json(send, *apiregistration.handle(self, req, path))
        segs = path.strip("/").split("/")
        if segs[0] == "api" and len(segs) >= 2:
            group, version, rest = "", segs[1], segs[2:]
        elif segs[0] == "apis" and len(segs) >= 2:
            if len(segs) == 2:
                if segs[1] in GROUP_VERSIONS and segs[1]:
                    return await _send_json(send, 200, self._group(segs[1]) | {"kind": "APIGroup", "apiVersion": "v1"})
                raise err.path_not_found(path)
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            raise err.path_not_found(path)
        if version not in GROUP_VERSIONS.get(group, []):
            raise err.path_not_found(path)
        if not rest:
            if req.method != "GET":
                raise err.method_not_allowed(f"the server does not allow this method on the requested resource ({req.method} {path})")
            return await _send_json(send, 200, self._resource_list(group, version))
        await self._resource(req, send, group, version, rest)

    # ------------------------------------------------------------------ discovery
    @staticmethod
    def _group(group: str) -> dict:
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in GROUP_VERSIONS[group]]
        return {"name": group, "versions": versions, "preferredVersion": versions[0]}

    @staticmethod
    def _resource_list(group: str, version: str) -> dict:
        out = []
        for rt in resources_of(group, version):
            entry: dict[str, Any] = {"name": rt.plural, "singularName": rt.singular,
                                     "namespaced": rt.namespaced, "kind": rt.kind, "verbs": list(rt.verbs)}
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            out.append(entry)
            for sub in rt.subresources:
                s: dict[str, Any] = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced}
                if sub == "scale":
                    s |= {"group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}
                elif sub == "log":
                    s |= {"kind": "Pod", "verbs": ["get"]}
                elif sub in streaming.STREAMING_SUBRESOURCES:
                    s |= {"kind": "PodExecOptions" if sub == "exec" else "PodPortForwardOptions", "verbs": ["create", "get"]}
                elif sub == "token":
                    s |= {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}
                else:
                    s |= {"kind": rt.kind, "verbs": ["get", "patch", "update"]}
                out.append(s)
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": out}

    async def _openapi(self, path: str, send: Callable) -> None:
        if path == "/openapi/v3":
            return await _send_json(send, 200, openapi.index())
        if path.startswith("/openapi/v3/"):
            doc = openapi.document_for(path[len("/openapi/v3/"):])
            if doc is not None:
                return await _send_json(send, 200, doc)
        raise err.path_not_found(path)

    # ------------------------------------------------------------------ resources
    async def _resource(self, req: Request, send: Callable, group: str, version: str, rest: list[str]) -> None:
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and lookup(group, version, rest[2]) is not None \
                and lookup(group, version, rest[2]).namespaced:
            namespace, rest = rest[1], rest[2:]
        rt = lookup(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise err.path_not_found(req.path)
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if rt.namespaced and name is not None and namespace is None:
            raise err.path_not_found(req.path)
        if not rt.namespaced:
            namespace = None
        if rt is PODS and sub in streaming.STREAMING_SUBRESOURCES and name is not None:
            # POST is what SPDY clients send (verb create); a plain GET is the verb get
            self._authorize(req, rt, "create" if req.method == "POST" else "get", namespace, name, sub)
            return await self.streaming.http(req, send, namespace or "", name, sub)
        if sub is not None and sub not in rt.subresources:
            if (rt.plural, sub) in UNIMPLEMENTED_SUBRESOURCES:
                raise err.not_implemented(f"{rt.plural}/{sub}")
            raise err.path_not_found(req.path)
        m = req.method
        verb = {("GET", False): "list", ("GET", True): "get", ("POST", False): "create",
                ("PUT", True): "update", ("PATCH", True): "patch", ("DELETE", True): "delete",
                ("DELETE", False): "deletecollection"}.get((m, name is not None))
        if verb == "list" and req.flag("watch"):
            verb = "watch"
        if sub == "token" and m == "POST" and name is not None:
            verb = "create"
        if verb is None or (sub is None and verb not in rt.verbs):
            raise err.method_not_allowed(f"the server does not allow this method on the requested resource ({m} {rt.plural})")
        self._authorize(req, rt, verb, namespace, name, sub)
        if sub == "token":
            if verb != "create":
                raise err.method_not_allowed("the server does not allow this method on the requested resource (serviceaccounts/token)")
            return await self._token_request(req, send, namespace or "", name or "")
        if sub == "log":
            if verb != "get":
                raise err.method_not_allowed("the server does not allow this method on the requested resource (pods/log)")
            return await self._pod_log(req, send, namespace or "", name or "")
        if sub == "scale":
            return await self._scale(req, send, rt, namespace or "", name or "", verb)
        if sub == "status" and verb not in ("get", "update", "patch"):
            raise err.method_not_allowed(f"the server does not allow this method on the requested resource ({rt.plural}/status)")
        handler = getattr(self, f"_{verb}")
        await handler(req, send, rt, namespace, name, sub)

    # -------------------------------------------------- authorization
    def _authorize(self, req: Request, rt: ResourceType, verb: str, namespace: str | None,
                   name: str | None, sub: str | None) -> None:
        user = req.user
        if user is None or user.privileged:
            return
        attr_name = name or ""
        if not name and verb in ("list", "watch"):
            # as the apiserver's RequestInfo: a list or watch of one name is about that name
            for part in (req.query.get("fieldSelector") or "").split(","):
                key, _, value = part.replace("==", "=").partition("=")
                if key.strip() == "metadata.name" and not key.endswith("!"):
                    attr_name = value.strip()
        ns = namespace or ""
        if rt.plural == "namespaces" and not rt.group and name:
            ns = name
        self.authorizer.check(user, Attributes(verb, rt.plural, rt.group, sub or "", attr_name, ns))

    # -------------------------------------------------- service account tokens
    async def _token_request(self, req: Request, send: Callable, ns: str, name: str) -> None:
        """``POST .../serviceaccounts/<name>/token`` (TokenRequest, ``kubectl create token``)."""
        body = await self._read_object(req)
        if not isinstance(body, dict) or body.get("kind") not in (None, "TokenRequest") \
                or body.get("apiVersion") not in (None, "authentication.k8s.io/v1"):
            raise err.bad_request("the body of the request was not a valid authentication.k8s.io/v1 TokenRequest")
        sa = self.store.get(SERVICEACCOUNTS, ns, name)
        if self.tokens is None:
            raise err.not_implemented("serviceaccounts/token")
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        seconds = spec.get("expirationSeconds") or TOKEN_DEFAULT_SECONDS
        causes: list[tuple[str, str]] = []
        if not isinstance(seconds, int) or seconds < TOKEN_MIN_SECONDS:
            causes.append(("spec.expirationSeconds", f"Invalid value: {seconds}: may not specify a duration less than 10 minutes"))
        elif seconds > 1 << 32:
            causes.append(("spec.expirationSeconds", f"Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds"))
        audiences = spec.get("audiences") or list(authn.API_AUDIENCES)
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            causes.append(("spec.audiences", "Invalid value: must be a list of strings"))
        bound = None
        ref = spec.get("boundObjectRef")
        if isinstance(ref, dict) and ref:
            kind = ref.get("kind")
            rt = {"Pod": PODS, "Secret": SECRETS}.get(kind or "")
            if rt is None:
                causes.append(("spec.boundObjectRef.kind", f'Unsupported value: "{kind}": supported values: "Pod", "Secret"'))
            else:
                obj = self.store.try_get(rt, ns, ref.get("name", ""))
                if obj is None:
                    raise err.not_found("", rt.plural, ref.get("name", ""))
                if ref.get("uid") and ref["uid"] != obj["metadata"].get("uid"):
                    raise err.conflict("", rt.plural, ref.get("name", ""),
                                       f'the UID in the bound object reference ({ref["uid"]}) does not match the UID in record. The object might have been deleted and then recreated')
                bound = {"kind": kind, "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}
                ref = {"kind": kind, "apiVersion": "v1", "name": bound["name"], "uid": bound["uid"]}
        if causes:
            raise err.invalid("authentication.k8s.io", "TokenRequest", name, causes)
        token, exp = self.tokens.issue(ns, name, sa["metadata"]["uid"], seconds=seconds, audiences=audiences, bound=bound)
        out_spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": seconds}
        if bound is not None:
            out_spec["boundObjectRef"] = ref
        expires = datetime.datetime.fromtimestamp(exp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await _send_json(send, 201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                                     "metadata": {"name": name, "namespace": ns, "creationTimestamp": now_rfc3339()},
                                     "spec": out_spec, "status": {"token": token, "expirationTimestamp": expires}})

    # -------------------------------------------------- get / list / watch
    async def _get(self, req, send, rt: ResourceType, ns, name, sub) -> None:
        obj = self._typed(rt, self.store.get(rt, ns or "", name))
        if req.wants_table and sub is None:
            return await _send_json(send, 200, tables.to_table(rt, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                                                              include=req.query.get("includeObject", "Metadata")))
        await _send_json(send, 200, obj)

    @staticmethod
    def _typed(rt: ResourceType, obj: dict) -> dict:
        obj = conversion.to_external(rt, obj)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        return obj

    def _predicate(self, req: Request, rt: ResourceType) -> Callable[[dict], bool]:
        lp = parse_label_selector(req.query.get("labelSelector"))
        fp = parse_field_selector(req.query.get("fieldSelector"), rt.plural, rt.kind)
        return lambda o: lp((o.get("metadata") or {}).get("labels") or {}) and fp(o)

    async def _list(self, req, send, rt: ResourceType, ns, name, sub) -> None:
        pred = self._predicate(req, rt)
        items, rv = self.store.list(rt, ns, pred)
        limit = _int_param(req, "limit") or 0
        start = 0
        if req.query.get("continue"):
            try:
                tok = json.loads(base64.urlsafe_b64decode(req.query["continue"].encode()))
                start = int(tok["start"])
            except Exception:
                raise err.bad_request("continue key is not valid: illegal base64 data")
        page = items[start:start + limit] if limit > 0 else items[start:]
        list_meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit > 0 and start + limit < len(items):
            list_meta["continue"] = base64.urlsafe_b64encode(json.dumps({"start": start + limit, "rv": rv}).encode()).decode()
            list_meta["remainingItemCount"] = len(items) - start - limit
        page = [self._typed(rt, o) for o in page]
        if req.wants_table:
            return await _send_json(send, 200, tables.to_table(rt, page, list_meta, include=req.query.get("includeObject", "Metadata")))
        for o in page:
            o.pop("apiVersion", None)
            o.pop("kind", None)
        await _send_json(send, 200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                                     "metadata": list_meta, "items": page})

    async def _watch(self, req, send, rt: ResourceType, ns, name, sub) -> None:
        pred = self._predicate(req, rt)
        timeout = _int_param(req, "timeoutSeconds")
        bookmarks = req.flag("allowWatchBookmarks")
        initial = req.flag("sendInitialEvents")
        rv_text = req.query.get("resourceVersion", "")
        since: int | None = None
        if rv_text not in ("", "0") and not initial:
            try:
                since = int(rv_text)
            except ValueError:
                raise err.bad_request(f'invalid resource version: "{rv_text}"')
        as_table = req.wants_table
        include = req.query.get("includeObject", "Metadata")
        loop = asyncio.get_running_loop()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"cache-control", b"no-cache, private"),
            (b"transfer-encoding", b"chunked")]})
        first = [True]

        async def emit(type_: str, obj: dict) -> None:
            if type_ in ("ADDED", "MODIFIED", "DELETED"):
                obj = self._typed(rt, copy.deepcopy(obj))
                if as_table:
                    obj = tables.to_table(rt, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                                          include=include, headers=first[0])
                    first[0] = False
            line = json.dumps({"type": type_, "object": obj}).encode() + b"\n"
            await send({"type": "http.response.body", "body": line, "more_body": True})

        def bookmark(rv: int, initial_end: bool = False) -> dict:
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

        try:
            watcher, replay, snapshot, rv = self.store.watch(rt, ns, since, loop)
        except err.ApiError as e:
            await send({"type": "http.response.body", "body": json.dumps({"type": "ERROR", "object": e.status()}).encode() + b"\n", "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            while True:
                msg = await req.receive()
                if msg["type"] == "http.disconnect":
                    disconnected.set()
                    watcher.queue.put_nowait(None)
                    return
        dtask = asyncio.create_task(watch_disconnect())
        deadline = loop.time() + timeout if timeout else None
        last_rv = rv
        try:
            for obj in snapshot:
                if pred(obj):
                    await emit("ADDED", obj)
            if initial and bookmarks:
                await emit("BOOKMARK", bookmark(rv, True))
            for ev in replay:
                await self._emit_event(ev, pred, emit)
                last_rv = ev.rv
            next_bookmark = loop.time() + self.bookmark_interval
            while not self._closed and not disconnected.is_set():
                now = loop.time()
                wait = next_bookmark - now
                if deadline is not None:
                    wait = min(wait, deadline - now)
                    if wait <= 0:
                        break
                try:
                    ev = await asyncio.wait_for(watcher.queue.get(), timeout=max(0.0, min(wait, 0.5)))
                except TimeoutError:
                    if loop.time() >= next_bookmark:
                        if bookmarks:
                            await emit("BOOKMARK", bookmark(self.store.resource_version if last_rv is None else max(last_rv, 0)))
                        next_bookmark = loop.time() + self.bookmark_interval
                    continue
                if ev is None:
                    break
                if ev.rv <= rv and since is None:
                    continue
                await self._emit_event(ev, pred, emit)
                last_rv = ev.rv
        finally:
            self.store.unwatch(watcher)
            dtask.cancel()
        if not disconnected.is_set():
            try:
                await send({"type": "http.response.body", "body": b""})
            except Exception:
                pass

    @staticmethod
    async def _emit_event(ev: Event, pred: Callable[[dict], bool], emit: Callable) -> None:
        new_ok = pred(ev.obj)
        old_ok = ev.old is not None and pred(ev.old)
        if ev.type == "ADDED":
            if new_ok:
                await emit("ADDED", ev.obj)
        elif ev.type == "DELETED":
            if new_ok or old_ok:
                await emit("DELETED", ev.obj)
        elif new_ok and old_ok:
            await emit("MODIFIED", ev.obj)
        elif new_ok:
            await emit("ADDED", ev.obj)
        elif old_ok:
            await emit("DELETED", ev.obj)

    # -------------------------------------------------- writes
    async def _read_object(self, req: Request) -> Any:
        raw = await req.body()
        ctype = req.headers.get("content-type", "application/json").split(";")[0].strip()
        try:
            if ctype in ("application/yaml", patchlib.APPLY_PATCH):
                return _within_depth(yaml.safe_load(raw.decode() or "null"))
            if ctype in ("application/json", "", patchlib.JSON_PATCH, patchlib.MERGE_PATCH, patchlib.STRATEGIC_PATCH):
                return _within_depth(json.loads(raw or b"null"))
            if ctype == protobuf.PROTOBUF and req.method in ("POST", "PUT"):
                return _within_depth(protobuf.decode(raw))
        except RecursionError:  # the decoder itself ran out of stack: far past MAX_DEPTH
            raise err.bad_request(f"the body of the request could not be decoded: exceeded max depth of {MAX_DEPTH}") from None
        except (ValueError, yaml.YAMLError) as e:
            raise err.bad_request(f"the body of the request could not be decoded: {e}")
        raise err.unsupported_media_type(ctype)

    def _check_body(self, rt: ResourceType, obj: Any, ns: str | None, name: str | None) -> dict:
        if not isinstance(obj, dict):
            raise err.bad_request(f"the body of the request was not a valid {rt.kind} object")
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != rt.kind:
            raise err.bad_request(f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})" if api_version != rt.api_version
                                  else f'{kind} in version "{rt.version}" cannot be handled as a {rt.kind}: no kind "{kind}" is registered')
        if api_version and api_version != rt.api_version:
            raise err.bad_request(f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})")
        m = obj.setdefault("metadata", {})
        if not isinstance(m, dict):
            raise err.bad_request("metadata must be an object")
        if rt.namespaced:
            if m.get("namespace") and m["namespace"] != ns:
                raise err.bad_request("the namespace of the provided object does not match the namespace sent on the request")
            m["namespace"] = ns
        else:
            m.pop("namespace", None)
        if name is not None and m.get("name") and m["name"] != name:
            raise err.bad_request("the name of the object (%s) does not match the name on the URL (%s)" % (m["name"], name))
        if name is not None:
            m["name"] = name
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        return obj

    @staticmethod
    def _validate_fields(req: Request, rt: ResourceType, obj: Any, headers: dict[str, str]) -> None:
        """``fieldValidation``: Strict refuses unknown fields, Warn (the default) reports
        them in a ``Warning`` header, Ignore drops them silently."""
        mode = req.query.get("fieldValidation", "Warn")
        if mode not in ("Strict", "Warn", "Ignore"):
            raise err.bad_request(f'fieldValidation must be one of "Ignore", "Warn" or "Strict", not "{mode}"')
        if mode == "Ignore":
            return
        unknown = fields.unknown_fields(rt.kind, obj)
        if not unknown:
            return
        if mode == "Strict":
            detail = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise err.bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding error: {detail}')
        headers["Warning"] = ", ".join('299 - "unknown field \\"%s\\""' % u for u in unknown)

    def _check_namespace(self, rt: ResourceType, ns: str | None) -> None:
        if not rt.namespaced:
            return
        nsobj = self.store.try_get(NS, "", ns or "")
        if nsobj is None:
            raise err.not_found("", "namespaces", ns or "")
        if is_terminating(nsobj):
            raise err.ApiError(403, "Forbidden", f'{rt.plural} "" is forbidden: unable to create new content in namespace {ns} because it is being terminated')

    def _create_object(self, rt: ResourceType, obj: dict, dry_run: bool) -> dict:
        obj = conversion.to_internal(rt, obj, None)
        self._check_namespace(rt, obj["metadata"].get("namespace"))
        if rt is PODS:
            admission.admit_pod(self.store, obj)
        m = obj["metadata"]
        used: set[str] = set()
        if rt.kind == "Service":
            used = {(s.get("spec") or {}).get("clusterIP") for s in self.store.list(rt)[0]} - {None}
        if not m.get("name") and m.get("generateName"):
            m["name"] = m["generateName"] + "xxxxx"
            strategies.prepare(rt, obj, None, used_ips=used)
            m["name"] = ""
        else:
            strategies.prepare(rt, obj, None, used_ips=used)
        for f in ("resourceVersion", "uid", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            m.pop(f, None)
        if rt.has_status and rt.kind != "Namespace":
            obj.pop("status", None)
        if dry_run:
            if self.store.try_get(rt, m.get("namespace", ""), m["name"]) is not None:
                raise err.already_exists(rt.group, rt.plural, m["name"])
            return obj
        created = self.store.create(rt, obj)
        if rt is NS:
            # the serviceaccount controller's work, done at once so that a pod created right
            # after its namespace finds the default service account
            admission.ensure_default_service_account(self.store, created["metadata"]["name"])
        return created

    async def _create(self, req, send, rt: ResourceType, ns, name, sub) -> None:
        obj = self._check_body(rt, await self._read_object(req), ns, None)
        headers: dict[str, str] = {}
        self._validate_fields(req, rt, obj, headers)
        created = self._create_object(rt, obj, req.query.get("dryRun") == "All")
        await _send_json(send, 201, self._typed(rt, created), headers)

    def _update_object(self, rt: ResourceType, obj: dict, sub: str | None, dry_run: bool) -> dict:
        m = obj["metadata"]
        old = self.store.get(rt, m.get("namespace", ""), m["name"])
        obj = conversion.to_internal(rt, obj, old)
        m = obj["metadata"]
        if sub == "status":
            merged = copy.deepcopy(old)
            merged["status"] = obj.get("status")
            merged["metadata"] = obj["metadata"]
            obj = merged
        else:
            strategies.prepare(rt, obj, old)
        m.pop("managedFields", None)
        if dry_run:
            return obj
        return self.store.update(rt, obj, subresource=sub)

    async def _update(self, req, send, rt: ResourceType, ns, name, sub) -> None:
        obj = self._check_body(rt, await self._read_object(req), ns, name)
        headers: dict[str, str] = {}
        self._validate_fields(req, rt, obj, headers)
        updated = self._update_object(rt, obj, sub, req.query.get("dryRun") == "All")
        await _send_json(send, 200, self._typed(rt, updated), headers)

    def _apply_patch(self, req: Request, ctype: str, current: dict, body: Any) -> dict:
        if ctype == patchlib.JSON_PATCH:
            return patchlib.json_patch(current, body)
        if not isinstance(body, dict):
            raise err.bad_request("the patch body must be a JSON object")
        if ctype == patchlib.MERGE_PATCH:
            return patchlib.merge_patch(current, body)
        if ctype == patchlib.STRATEGIC_PATCH:
            return patchlib.strategic_merge(current, body)
        raise err.unsupported_media_type(ctype)

    async def _patch(self, req, send, rt: ResourceType, ns, name, sub) -> None:
        ctype = req.headers.get("content-type", "").split(";")[0].strip()
        if ctype not in (patchlib.JSON_PATCH, patchlib.MERGE_PATCH, patchlib.STRATEGIC_PATCH, patchlib.APPLY_PATCH):
            raise err.unsupported_media_type(ctype)
        body = await self._read_object(req)
        dry_run = req.query.get("dryRun") == "All"
        if ctype == patchlib.APPLY_PATCH:
            return await self._server_side_apply(req, send, rt, ns, name, sub, body, dry_run)
        for attempt in range(5):
            current = self._typed(rt, self.store.get(rt, ns or "", name))
            rv = current["metadata"]["resourceVersion"]
            new = self._apply_patch(req, ctype, current, body)
            new = self._check_body(rt, new, ns, name)
            headers: dict[str, str] = {}
            self._validate_fields(req, rt, new, headers)
            pinned = new["metadata"].get("resourceVersion") not in (None, rv)
            if not pinned:
                new["metadata"]["resourceVersion"] = rv
            try:
                updated = self._update_object(rt, new, sub, dry_run)
                return await _send_json(send, 200, self._typed(rt, updated), headers)
            except err.ApiError as e:
                if e.reason != "Conflict" or pinned or attempt == 4:
                    raise

    async def _server_side_apply(self, req, send, rt, ns, name, sub, body, dry_run) -> None:
        manager = req.query.get("fieldManager")
        if not manager:
            raise err.bad_request("PATCH requests with apply content type need a field manager")
        applied = self._check_body(rt, body, ns, name)
        self._validate_fields(req, rt, applied, {})
        force = req.flag("force")
        owners = self.store.apply_owners(rt, ns or "", name)
        current = self.store.try_get(rt, ns or "", name)
        if current is None:
            if sub is not None:
                raise err.not_found(rt.group, rt.plural, name)
            new, _ = patchlib.apply(None, applied, manager, {}, force)
            created = self._create_object(rt, self._check_body(rt, new, ns, name), dry_run)
            if not dry_run:
                self.store.set_apply_owner(rt, ns or "", name, manager, applied)
            return await _send_json(send, 201, self._typed(rt, created))
        current = self._typed(rt, current)
        new, conflicts = patchlib.apply(current, applied, manager, owners, force)
        if conflicts and not force:
            raise err.apply_conflict(rt.group, rt.plural, name, conflicts)
        new = self._check_body(rt, new, ns, name)
        if applied["metadata"].get("resourceVersion") is None:
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        updated = self._update_object(rt, new, sub, dry_run)
        if not dry_run:
            self.store.set_apply_owner(rt, ns or "", name, manager, applied)
        await _send_json(send, 200, self._typed(rt, updated))

    # -------------------------------------------------- delete
    async def _delete_options(self, req: Request) -> dict:
        opts: dict[str, Any] = {}
        raw = await req.body()
        if raw.strip():
            try:
                opts = json.loads(raw)
            except ValueError as e:
                raise err.bad_request(f"the DeleteOptions body could not be decoded: {e}")
            if not isinstance(opts, dict):
                raise err.bad_request("the DeleteOptions body must be an object")
        if "propagationPolicy" in req.query:
            opts["propagationPolicy"] = req.query["propagationPolicy"]
        if "gracePeriodSeconds" in req.query:
            opts["gracePeriodSeconds"] = _int_param(req, "gracePeriodSeconds")
        if req.query.get("dryRun"):
            opts["dryRun"] = [req.query["dryRun"]]
        pol = opts.get("propagationPolicy")
        if pol is None and opts.get("orphanDependents") is True:
            opts["propagationPolicy"] = "Orphan"
        if opts.get("propagationPolicy") not in (None, "Orphan", "Background", "Foreground"):
            raise err.invalid("", "DeleteOptions", "", [("propagationPolicy", f'Unsupported value: "{pol}": supported values: "Foreground", "Background", "Orphan"')])
        return opts

    def _delete_one(self, rt: ResourceType, ns: str | None, name: str, opts: dict) -> dict:
        pre = opts.get("preconditions") or {}
        if "All" in (opts.get("dryRun") or []):
            return self.store.get(rt, ns or "", name)
        return self.store.delete(rt, ns or "", name, propagation=opts.get("propagationPolicy"),
                                 grace=opts.get("gracePeriodSeconds"),
                                 precondition_rv=pre.get("resourceVersion"), precondition_uid=pre.get("uid"))

    async def _delete(self, req, send, rt: ResourceType, ns, name, sub) -> None:
        opts = await self._delete_options(req)
        obj = self._delete_one(rt, ns, name, opts)
        # As the apiserver's registries with ReturnDeletedObject: services and pods answer
        # with the deleted object (the typed clients deserialize a V1Service / V1Pod).
        if self.store.try_get(rt, ns or "", name) is not None or rt.plural in RETURNS_DELETED_OBJECT:
            return await _send_json(send, 200, self._typed(rt, obj))
        details: dict[str, Any] = {"name": name, "kind": rt.plural, "uid": obj["metadata"].get("uid")}
        if rt.group:
            details["group"] = rt.group
        await _send_json(send, 200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                     "status": "Success", "details": details})

    async def _deletecollection(self, req, send, rt: ResourceType, ns, name, sub) -> None:
        opts = await self._delete_options(req)
        items, _ = self.store.list(rt, ns, self._predicate(req, rt))
        out = []
        for o in items:
            try:
                out.append(self._typed(rt, self._delete_one(rt, o["metadata"].get("namespace"), o["metadata"]["name"], opts)))
            except err.ApiError as e:
                if e.code != 404:
                    raise
        await _send_json(send, 200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                                     "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": out})

    # -------------------------------------------------- scale subresource
    @staticmethod
    def _to_scale(rt: ResourceType, obj: dict) -> dict:
        m = obj["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in m},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": selector_to_string((obj.get("spec") or {}).get("selector"))}}

    async def _scale(self, req: Request, send: Callable, rt: ResourceType, ns: str, name: str, verb: str) -> None:
        if verb == "get":
            return await _send_json(send, 200, self._to_scale(rt, self.store.get(rt, ns, name)))
        if verb not in ("update", "patch"):
            raise err.method_not_allowed(f"the server does not allow this method on the requested resource ({rt.plural}/scale)")
        ctype = req.headers.get("content-type", "application/json").split(";")[0].strip()
        body = await self._read_object(req)
        for attempt in range(5):
            obj = self.store.get(rt, ns, name)
            scale = self._to_scale(rt, obj)
            if verb == "update":
                new_scale = body
            elif ctype == patchlib.APPLY_PATCH:
                new_scale = patchlib.strategic_merge(scale, body)
            else:
                new_scale = self._apply_patch(req, ctype, scale, body)
            if not isinstance(new_scale, dict) or new_scale.get("kind", "Scale") != "Scale":
                raise err.bad_request("the body of the request was not a valid Scale object")
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise err.invalid("autoscaling", "Scale", name, [("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0")])
            sent_rv = (new_scale.get("metadata") or {}).get("resourceVersion")
            pinned = sent_rv not in (None, "", scale["metadata"]["resourceVersion"])
            if pinned:
                raise err.conflict(rt.group, rt.plural, name)
            obj["spec"]["replicas"] = replicas
            if req.query.get("dryRun") == "All":
                return await _send_json(send, 200, self._to_scale(rt, obj))
            try:
                updated = self.store.update(rt, obj)
            except err.ApiError as e:
                if e.reason != "Conflict" or attempt == 4:
                    raise
                continue
            return await _send_json(send, 200, self._to_scale(rt, updated))

    # -------------------------------------------------- pod logs
    async def _pod_log(self, req: Request, send: Callable, ns: str, name: str) -> None:
        pod = self.store.get(PODS, ns, name)
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = req.query.get("container")
        if not container:
            if len(containers) != 1:
                raise err.bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]")
            container = containers[0]
        if container not in containers:
            raise err.bad_request(f"container {container} is not valid for pod {name}")
        tail = _int_param(req, "tailLines")
        limit_bytes = _int_param(req, "limitBytes")
        previous = req.flag("previous")
        follow = req.flag("follow")
        data = self.logs.read_logs(ns, name, container, previous=previous) if self.logs else None
        if data is None:
            if previous:
                raise err.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            raise err.bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
        sent = len(data)
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
        if limit_bytes is not None:
            data = data[:limit_bytes]
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/plain"), (b"cache-control", b"no-cache, private")]})
        await send({"type": "http.response.body", "body": data, "more_body": follow})
        if not follow:
            return
        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            while True:
                if (await req.receive())["type"] == "http.disconnect":
                    disconnected.set()
                    return
        dtask = asyncio.create_task(watch_disconnect())
        try:
            idle_after_exit = 0
            while not self._closed and not disconnected.is_set():
                await asyncio.sleep(0.1)
                cur = self.logs.read_logs(ns, name, container) if self.logs else None
                if cur is None:
                    break
                if len(cur) < sent:  # rotated: the stream starts again from the new file
                    sent = 0
                if len(cur) > sent:
                    await send({"type": "http.response.body", "body": cur[sent:], "more_body": True})
                    sent = len(cur)
                if not self.logs.container_running(ns, name, container):
                    idle_after_exit += 1
                    if idle_after_exit > 2:
                        break
        finally:
            dtask.cancel()
        if not disconnected.is_set():
            await send({"type": "http.response.body", "body": b""})
