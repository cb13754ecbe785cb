"""``Microsoft.Web``: App Service plans and sites (web apps, function apps) whose containers run.

A site (or one of its slots, ``sites/{name}/slots/{slot}``, which has the same shape) whose
``siteConfig.linuxFxVersion`` is ``DOCKER|<registry>/<image>:<tag>`` runs that image on the
core's engine, pulled with the credentials of its ``DOCKER_REGISTRY_SERVER_URL`` /
``_USERNAME`` / ``_PASSWORD`` app settings. Every other app setting reaches the container as
an environment variable, as on App Service; ``WEBSITES_PORT`` is recorded as the container
port (the engines publish the image's serving port) and passed on as ``PORT``.

Addresses: the emulator has no DNS, so each site and slot answers HTTPS (a certificate from
the ARM service's CA, also valid for ``<name>.azurewebsites.net``) on its own loopback port,
and says so in ``defaultHostName`` (``127.0.0.1:<port>``): what a client builds its URL
from. The site's front end forwards each request to the container running for the slot at
that moment, so a slot swap moves traffic between two running containers without dropping a
request. Each site and slot also has its Kudu (SCM) host on another loopback port
(``hostNameSslStates`` entry of ``hostType`` ``Repository``) serving the log stream
``/logstream`` and ``/api/logstream`` to HTTP Basic with the publishing credentials.

Create-or-update of a site or slot, and slot swaps, are long-running operations
(:mod:`aml_emulator.arm.operations`). A site's create finishes once its container answers
HTTP or could not start; a container that cannot start (refused registry credentials, missing
image, exit before answering) leaves the site ``availabilityState: Limited`` with the reason
in its log stream, as App Service keeps the site and shows the failure in its logs. A swap
finishes once the source slot's container is ready, then exchanges the two slots' content
(container, site config and app settings) at once.

Plans and sites are kept in the ARM state directory; running sites start again when the
emulator restarts, on the same ports when those are still free. Site kinds include
``functionapp,linux,container``: function apps share this resource and its runtime, and also
have host and function keys (``host/default/listkeys``, ``functions/{name}/listkeys``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import hmac
import re
import secrets
import threading
import time
from typing import Any

import attrs

from aml_emulator.arm import exceptions
from aml_emulator.arm.containers import PUBLIC_IP, engine, free_port, port_free, pull_image
from aml_emulator.arm.operations import CREATE, IN_PROGRESS, UPDATE, WorkStatus, register_status_routes
from aml_emulator.arm.router import COLLECTION, ITEM, ApiVersionRange, ArmRequest, ArmResponse, ResourceProvider

NAMESPACE = "Microsoft.Web"
SERVERFARMS = "serverfarms"
SITES = "sites"
PLAN_TYPE = f"{NAMESPACE}/{SERVERFARMS}"
SITE_TYPE = f"{NAMESPACE}/{SITES}"
SLOT_TYPE = f"{NAMESPACE}/sites/slots"
#: 2016-08-01 is the oldest version with these shapes; 2025-05-01 is azure-mgmt-web 11.0.1's default
API_VERSIONS = ApiVersionRange("2016-08-01", "2025-05-01")
PRODUCTION = "production"

#: plan SKUs and their tiers; slots need Standard or above (App Service's pricing rule)
SKU_TIERS = {
    "F1": "Free", "D1": "Shared", "B1": "Basic", "B2": "Basic", "B3": "Basic",
    "S1": "Standard", "S2": "Standard", "S3": "Standard",
    "P1v2": "PremiumV2", "P2v2": "PremiumV2", "P3v2": "PremiumV2",
    "P0v3": "PremiumV3", "P1v3": "PremiumV3", "P2v3": "PremiumV3", "P3v3": "PremiumV3",
    "EP1": "ElasticPremium", "EP2": "ElasticPremium", "EP3": "ElasticPremium", "Y1": "Dynamic",
}
SLOT_LIMITS = {"Free": 0, "Shared": 0, "Basic": 0, "Dynamic": 0, "Standard": 5, "PremiumV2": 20,
               "PremiumV3": 20, "ElasticPremium": 3}
SITE_KINDS = ("app", "app,linux", "app,linux,container", "functionapp", "functionapp,linux",
              "functionapp,linux,container")
#: App Service's default wait for a container to answer (WEBSITES_CONTAINER_START_TIME_LIMIT)
START_TIME_LIMIT = 230.0
#: Kudu's default log stream timeout (SCM_LOGSTREAM_TIMEOUT), and its idle notice period
LOGSTREAM_TIMEOUT = 7200.0
LOGSTREAM_IDLE_NOTICE = 60.0
#: seconds between two looks at a container's log for the stream, and at a starting container
_TICK = 0.1

_SITE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,58}[A-Za-z0-9])?$")
_PLAN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                         "trailer", "transfer-encoding", "upgrade", "host", "content-length"})

PROVIDER = ResourceProvider(NAMESPACE, API_VERSIONS)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plan_id(subscription_id: str, group: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{group}/providers/{PLAN_TYPE}/{name}"


def _site_id(subscription_id: str, group: str, name: str, slot: str | None = None) -> str:
    base = f"/subscriptions/{subscription_id}/resourceGroups/{group}/providers/{SITE_TYPE}/{name}"
    return base if slot is None else f"{base}/slots/{slot}"


# -- plans ----------------------------------------------------------------------------------


@attrs.define(eq=False)
class PlanResource:
    """An App Service plan: its SKU and whether it hosts Linux (``reserved``)."""

    name: str
    location: str
    sku: dict[str, Any]
    kind: str = "app"
    reserved: bool = False
    tags: dict[str, str] = attrs.field(factory=dict)

    @property
    def tier(self) -> str:
        return self.sku["tier"]

    def to_state(self) -> dict[str, Any]:
        return {"name": self.name, "location": self.location, "sku": self.sku, "kind": self.kind,
                "reserved": self.reserved, "tags": self.tags}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "PlanResource":
        return cls(name=state["name"], location=state["location"], sku=dict(state["sku"]),
                   kind=state.get("kind", "app"), reserved=bool(state.get("reserved")),
                   tags=dict(state.get("tags") or {}))


PROVIDER.persist(SERVERFARMS, PlanResource.from_state)


def _validate_plan(name: str, body: Any) -> PlanResource:
    if not _PLAN_NAME.match(name):
        raise exceptions.invalid_parameter_message(
            f"The app service plan name '{name[:80]}' is invalid: 1 to 60 letters, digits, '-' or '_'.")
    if not isinstance(body, dict):
        raise exceptions.invalid_request_content("the body must be a JSON object")
    location = body.get("location")
    if not isinstance(location, str) or not location:
        raise exceptions.ArmError(400, "LocationRequired", "The location property is required for this definition.")
    sku = body.get("sku") or {"name": "S1"}
    sku_name = sku.get("name") if isinstance(sku, dict) else None
    canonical = {k.lower(): k for k in SKU_TIERS}.get(str(sku_name).lower())
    if canonical is None:
        raise exceptions.ArmError(
            400, "BadRequest",
            f"The pricing tier '{sku_name}' is not allowed for an App Service plan. Use one of: "
            f"{', '.join(SKU_TIERS)}.")
    capacity = sku.get("capacity", 1)
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise exceptions.invalid_parameter_message(
            f"The value '{capacity}' of 'sku.capacity' is invalid: it must be a whole number of at least 1.")
    props = body.get("properties") or {}
    kind = str(body.get("kind") or "app")
    return PlanResource(
        name=name, location=location, kind=kind, reserved=bool(props.get("reserved")),
        sku={"name": canonical, "tier": SKU_TIERS[canonical], "size": canonical,
             "family": re.sub(r"\d.*$", "", canonical), "capacity": capacity},
        tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()})


def plan_json(subscription_id: str, group: str, plan: PlanResource, sites: int) -> dict[str, Any]:
    return {"id": _plan_id(subscription_id, group, plan.name), "name": plan.name, "type": PLAN_TYPE,
            "kind": plan.kind, "location": plan.location, "tags": dict(plan.tags), "sku": dict(plan.sku),
            "properties": {"reserved": plan.reserved, "status": "Ready", "numberOfSites": sites,
                           "maximumNumberOfWorkers": 30, "geoRegion": plan.location,
                           "provisioningState": "Succeeded"}}


# -- the running part of a site -------------------------------------------------------------


class SiteRuntime:
    """One start of a site's container: pull, run, wait until it answers, and its log.

    Not persisted. A swap moves a runtime from one slot to the other with its log; a change
    of image or app settings replaces it (the old container stops, as App Service restarts).
    """

    def __init__(self, backend: Any, label: str, site_config: dict[str, Any], settings: dict[str, str],
                 image_env: Any = None) -> None:
        self.backend = backend
        #: ``(pulled image) -> {name: value}``: what the platform adds for this kind of site
        self.image_env = image_env
        self.label = label
        self.site_config = dict(site_config)
        self.settings = dict(settings)
        #: Starting | Running | Failed | Exited | Stopped
        self.status = "Starting"
        self.failure = ""
        #: ``http://127.0.0.1:<port>`` of the container once it answers
        self.backend_url: str | None = None
        self.handle: Any = None
        self.ready = threading.Event()
        self._stopped = threading.Event()
        self._platform: list[str] = []
        self._lock = threading.Lock()

    def log(self, level: str, message: str) -> None:
        with self._lock:
            self._platform.append(f"{_now()} {level:<5} - {message}\n")

    def text(self) -> str:
        """The platform's lines about this container, then the container's own output."""
        with self._lock:
            platform = "".join(self._platform)
        handle = self.handle
        return platform + (handle.logs() if handle is not None else "")

    def work(self) -> WorkStatus:
        return WorkStatus.finished() if self.ready.is_set() else WorkStatus.pending()

    def start(self) -> "SiteRuntime":
        threading.Thread(target=self._run, name=f"web-{self.label}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        handle, self.handle = self.handle, None
        if handle is not None:
            output = handle.logs()
            handle.stop(timeout=5)
            with self._lock:  # keep what it printed: the stream still shows it
                self._platform.append(output)
            self.log("INFO", f"Container {self.label} stopped.")
        if self.status in ("Starting", "Running"):
            self.status = "Stopped"
        self.backend_url = None
        self.ready.set()

    def _fail(self, message: str) -> None:
        self.status, self.failure = "Failed", message
        self.log("ERROR", message)
        self.ready.set()

    def _run(self) -> None:
        fx = str(self.site_config.get("linuxFxVersion") or "")
        if not fx:  # a site with no container serves App Service's default page
            self.status = "Running"
            self.ready.set()
            return
        reference = fx.split("|", 1)[1].strip()
        server = self.settings.get("DOCKER_REGISTRY_SERVER_URL", "")
        server = re.sub(r"^https?://", "", server).rstrip("/")
        credentials = {server: (self.settings.get("DOCKER_REGISTRY_SERVER_USERNAME"),
                                self.settings.get("DOCKER_REGISTRY_SERVER_PASSWORD"))} if server else {}
        self.log("INFO", f"Pulling image: {reference}")
        try:
            image = pull_image(self.backend, reference, credentials)
        except Exception as exc:  # refused credentials, unknown image: the site shows why
            self._fail(f"Pulling image {reference} failed: {exc}. Check the image name and the "
                       f"DOCKER_REGISTRY_SERVER_* app settings.")
            return
        if self._stopped.is_set():
            return
        self.log("INFO", f"Pulled image: {reference}")
        port = free_port()
        env = {k: v for k, v in self.settings.items() if k != "DOCKER_REGISTRY_SERVER_PASSWORD"}
        env.update(WEBSITE_SITE_NAME=self.label.split("__", 1)[0], PORT=self.settings.get("WEBSITES_PORT", "5001"))
        if self.image_env is not None:
            env.update(self.image_env(image))
        try:
            self.handle = engine(self.backend).run(image, name=f"web-{self.label}-{secrets.token_hex(3)}",
                                                   port=port, env=env)
        except Exception as exc:  # the engine could not start it
            self._fail(f"Starting container {self.label} failed: {exc}")
            return
        self.log("INFO", f"Starting container {self.label}; waiting for it to answer HTTP on its port.")
        limit = float(self.settings.get("WEBSITES_CONTAINER_START_TIME_LIMIT") or START_TIME_LIMIT)
        self._wait_answering(f"http://{PUBLIC_IP}:{port}", limit)

    def _wait_answering(self, url: str, limit: float) -> None:
        import requests

        deadline = time.monotonic() + limit
        while not self._stopped.is_set():
            handle = self.handle
            status = handle.wait(timeout=0) if handle is not None else None
            if status is not None:
                self._fail(f"Container {self.label} exited with code {status} before answering HTTP; "
                           f"see its output above.")
                return
            try:
                requests.get(url + "/", timeout=1)
            except requests.RequestException:
                if time.monotonic() > deadline:
                    self._fail(f"Container {self.label} did not answer HTTP within {limit:g} s "
                               f"(WEBSITES_CONTAINER_START_TIME_LIMIT).")
                    return
                self._stopped.wait(_TICK)
                continue
            self.backend_url, self.status = url, "Running"
            self.log("INFO", f"Container {self.label} for site {self.label.split('__', 1)[0]} initialized "
                             f"successfully and is ready to serve requests.")
            self.ready.set()
            return


# -- the front ends (the site's HTTPS host and its Kudu host) -------------------------------


class SiteFrontEnd:
    """ASGI: forward every request to the container the slot runs at that moment."""

    def __init__(self, site: "SiteResource") -> None:
        self.site = site
        self._client: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        runtime = self.site.runtime
        if runtime is None or runtime.status != "Running":
            await _send(send, 503, b"Service Unavailable: the site's container is not running.", "text/plain")
            return
        if runtime.backend_url is None:
            await _send(send, 200, b"<html><body>Your web app is running and waiting for your content."
                                   b"</body></html>", "text/html")
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        from aml_core.frontdoor.upstream import UpstreamClient, UpstreamError

        if self._client is None:
            self._client = UpstreamClient()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.decode("latin-1").lower() not in _HOP_BY_HOP]
        client_host = (scope.get("client") or ("", 0))[0]
        headers += [("x-forwarded-proto", "https"), ("x-forwarded-for", client_host),
                    ("x-arr-ssl", "1"), ("x-original-url", scope.get("raw_path", b"/").decode("latin-1"))]
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        try:
            status, answer_headers, answer = await self._client.request(
                runtime.backend_url, scope["method"], target.decode("latin-1"), headers, bytes(body))
        except UpstreamError:
            await _send(send, 502, b"Bad Gateway: the site's container did not answer.", "text/plain")
            return
        kept = [(k, v) for k, v in answer_headers if k.decode("latin-1").lower() not in _HOP_BY_HOP]
        kept.append((b"content-length", str(len(answer)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": kept})
        await send({"type": "http.response.body", "body": answer})


async def _send(send: Any, status: int, body: bytes, media: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class KuduApp:
    """ASGI: the SCM host of one site or slot: ``/logstream`` and ``/api/logstream``."""

    def __init__(self, site: "SiteResource") -> None:
        self.site = site

    def _authorized(self, scope: dict[str, Any]) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except ValueError:
            return False
        expected = self.site.publishing_password.encode()
        # both checks always run: the time taken does not say which one failed
        user_ok = hmac.compare_digest(user.encode(), self.site.publishing_user.encode())
        password_ok = hmac.compare_digest(password.encode(), expected)
        return user_ok and password_ok

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/")
        if not self._authorized(scope):
            await _send(send, 401, b"401 Unauthorized: use the site's publishing credentials.", "text/plain",
                        [(b"www-authenticate", f'Basic realm="{self.site.label}"'.encode())])
            return
        if not (path in ("/logstream", "/api/logstream") or path.startswith(("/logstream/", "/api/logstream/"))):
            await _send(send, 404, b"Not Found: the emulator's Kudu serves /logstream and /api/logstream.",
                        "text/plain")
            return
        timeout = float(self.site.app_settings.get("SCM_LOGSTREAM_TIMEOUT") or LOGSTREAM_TIMEOUT)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-cache")]})
        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.body", "more_body": True, "body": (
                f"{_now()}  Welcome, you are now connected to log-streaming service. The default timeout is 2 "
                f"hours. Change the timeout with the App Setting SCM_LOGSTREAM_TIMEOUT (in seconds).\n").encode()})
            await self._follow(send, disconnected, timeout)
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()

    async def _follow(self, send: Any, disconnected: asyncio.Event, timeout: float) -> None:
        started = last_sent = time.monotonic()
        runtime, offset = None, 0
        while not disconnected.is_set() and time.monotonic() - started < timeout:
            current = self.site.runtime
            if current is not runtime:  # a new start or a swap: follow the slot's container now
                runtime, offset = current, 0
            text = runtime.text() if runtime is not None else ""
            if len(text) < offset:
                offset = 0
            if len(text) > offset:
                await send({"type": "http.response.body", "body": text[offset:].encode(), "more_body": True})
                offset, last_sent = len(text), time.monotonic()
            elif time.monotonic() - last_sent >= LOGSTREAM_IDLE_NOTICE:
                minutes = int((time.monotonic() - last_sent) // 60)
                await send({"type": "http.response.body", "more_body": True,
                            "body": f"{_now()}  No new trace in the past {minutes} min(s).\n".encode()})
                last_sent = time.monotonic()
            try:
                await asyncio.wait_for(disconnected.wait(), _TICK * 2)
            except asyncio.TimeoutError:
                pass


# -- sites ----------------------------------------------------------------------------------


@attrs.define(eq=False)
class SiteResource:
    """A site or one of its slots: what was PUT, its app settings, its addresses and what runs."""

    name: str
    location: str
    kind: str
    server_farm_id: str
    site_config: dict[str, Any]
    #: the app settings (registry password and keys among them: never in a repr)
    app_settings: dict[str, str] = attrs.field(repr=False)
    #: the slot's name; ``None`` for the production site
    slot: str | None = None
    properties: dict[str, Any] = attrs.field(factory=dict)
    tags: dict[str, str] = attrs.field(factory=dict)
    publishing_password: str = attrs.field(factory=lambda: secrets.token_urlsafe(45), repr=False)
    provisioning_state: str = "Succeeded"
    #: ``Running`` | ``Stopped``
    state: str = "Running"
    host_port: int = 0
    scm_port: int = 0
    slots: dict[str, "SiteResource"] = attrs.field(factory=dict)
    runtime: SiteRuntime | None = attrs.field(default=None, repr=False)
    servers: list[Any] = attrs.field(factory=list, repr=False)
    #: a function app's keys: ``{masterKey, functionKeys, systemKeys, functions: {fn: {name: key}}}``
    functions_keys: dict[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def label(self) -> str:
        """The name App Service gives this site's hosts: ``site`` or ``site-slot``."""
        return self.name if self.slot is None else f"{self.name}-{self.slot}"

    @property
    def publishing_user(self) -> str:
        return f"${self.name}" if self.slot is None else f"${self.name}__{self.slot}"

    @property
    def default_host(self) -> str:
        return f"{PUBLIC_IP}:{self.host_port}"

    @property
    def scm_host(self) -> str:
        return f"{PUBLIC_IP}:{self.scm_port}"

    def to_state(self) -> dict[str, Any]:
        return {"name": self.name, "location": self.location, "kind": self.kind, "slot": self.slot,
                "server_farm_id": self.server_farm_id, "site_config": self.site_config,
                "app_settings": self.app_settings, "properties": self.properties, "tags": self.tags,
                "publishing_password": self.publishing_password, "state": self.state,
                "provisioning_state": self.provisioning_state, "host_port": self.host_port,
                "scm_port": self.scm_port, "slots": {k: v.to_state() for k, v in self.slots.items()},
                "functions_keys": self.functions_keys}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "SiteResource":
        # an operation does not outlive a restart: one cut short is taken as finished
        return cls(name=state["name"], location=state["location"], kind=state["kind"], slot=state.get("slot"),
                   server_farm_id=state["server_farm_id"], site_config=dict(state["site_config"]),
                   app_settings=dict(state["app_settings"]), properties=dict(state.get("properties") or {}),
                   tags=dict(state.get("tags") or {}), publishing_password=state["publishing_password"],
                   state=state.get("state", "Running"),
                   provisioning_state="Failed" if state.get("provisioning_state") == "Failed" else "Succeeded",
                   host_port=int(state.get("host_port") or 0), scm_port=int(state.get("scm_port") or 0),
                   slots={k: cls.from_state(v) for k, v in (state.get("slots") or {}).items()},
                   functions_keys=dict(state.get("functions_keys") or {}))

    def all_slots(self) -> list["SiteResource"]:
        return [self, *self.slots.values()]


PROVIDER.persist(SITES, SiteResource.from_state)


def _serve(backend: Any, site: SiteResource) -> None:
    """Start the site's HTTPS front end and Kudu host (on its kept ports when still free)."""
    if site.servers:
        return
    from aml_emulator._http import BackgroundServer

    ca = backend.services["ca"]
    directory = backend.services["state_dir"] / "web"
    hosts = (PUBLIC_IP, "localhost", f"{site.label}.azurewebsites.net")
    certfile, keyfile = ca.issue_server_cert(directory, site.label, hosts)
    scm_cert, scm_key = ca.issue_server_cert(directory, f"{site.label}.scm",
                                             (PUBLIC_IP, "localhost", f"{site.label}.scm.azurewebsites.net"))
    ports = []
    for app, port, cert, key, kind in ((SiteFrontEnd(site), site.host_port, certfile, keyfile, "site"),
                                       (KuduApp(site), site.scm_port, scm_cert, scm_key, "scm")):
        server = BackgroundServer(app, host=PUBLIC_IP, port=port if port and port_free(port) else 0,
                                  certfile=str(cert), keyfile=str(key), name=f"web-{kind}-{site.label}")
        site.servers.append(server.start())
        ports.append(server.port)
    site.host_port, site.scm_port = ports


def _unserve(site: SiteResource) -> None:
    servers, site.servers = site.servers, []
    for server in servers:
        server._server.should_exit = True  # noqa: SLF001 - our own package's server
        server._server.force_exit = True  # noqa: SLF001 - a log stream must not hold the stop
        server.stop(timeout=5)


def _start(backend: Any, site: SiteResource) -> SiteRuntime:
    """(Re)start the site's container with its current config and settings."""
    old = site.runtime
    image_env = (lambda image: _functions_env(backend, site, image)) if site.kind.startswith("functionapp") else None
    site.runtime = SiteRuntime(backend, site.label if site.slot is None else f"{site.name}__{site.slot}",
                               site.site_config, site.app_settings, image_env)
    if old is not None:
        old.stop()
    return site.runtime.start()


def _stop(site: SiteResource) -> None:
    runtime, site.runtime = site.runtime, None
    if runtime is not None:
        runtime.stop()


def _restore(backend: Any) -> None:
    """After a restart of the emulator: serve every site and run those that were running."""
    for _sub, _group, resource in backend.resources_of_type(SITES):
        for site in resource.all_slots():
            _serve(backend, site)
            if site.state == "Running":
                _start(backend, site)
    backend.save()


def _shutdown(backend: Any) -> None:
    for _sub, _group, resource in backend.resources_of_type(SITES):
        for site in resource.all_slots():
            _stop(site)
            _unserve(site)


PROVIDER.on_start.append(_restore)
PROVIDER.on_stop.append(_shutdown)


def _availability(site: SiteResource) -> str:
    runtime = site.runtime
    return "Limited" if runtime is not None and runtime.status in ("Failed", "Exited") else "Normal"


def site_json(subscription_id: str, group: str, site: SiteResource) -> dict[str, Any]:
    shown_config = {k: v for k, v in site.site_config.items() if k != "appSettings"}
    props = {k: v for k, v in site.properties.items() if k not in ("siteConfig", "serverFarmId")}
    props.update(
        state=site.state, hostNames=[site.default_host], enabledHostNames=[site.default_host, site.scm_host],
        defaultHostName=site.default_host, repositorySiteName=site.name, usageState="Normal", enabled=True,
        availabilityState=_availability(site), serverFarmId=site.server_farm_id, siteConfig=shown_config,
        hostNameSslStates=[{"name": site.default_host, "sslState": "Disabled", "hostType": "Standard"},
                           {"name": site.scm_host, "sslState": "Disabled", "hostType": "Repository"}],
        outboundIpAddresses=PUBLIC_IP, provisioningState=site.provisioning_state,
        reserved="linux" in site.kind, slotSwapStatus=None, resourceGroup=group)
    if site.slot is None:
        name, kind_type = site.name, SITE_TYPE
    else:
        name, kind_type = f"{site.name}/{site.slot}", SLOT_TYPE
    return {"id": _site_id(subscription_id, group, site.name, site.slot), "name": name, "type": kind_type,
            "kind": site.kind, "location": site.location, "tags": dict(site.tags), "properties": props}


def _find_plan(request: ArmRequest, group: str | None, name: str) -> tuple[str, PlanResource] | None:
    for _sub, found_group, plan in request.backend.resources(request.path.subscription_id, group, SERVERFARMS):
        if plan.name.lower() == name.lower():
            return found_group.name, plan
    return None


def _find_site(request: ArmRequest, name: str, group: str | None = None) -> tuple[str, SiteResource] | None:
    for _sub, found_group, site in request.backend.resources(request.path.subscription_id, group, SITES):
        if site.name.lower() == name.lower():
            return found_group.name, site
    return None


def _site_of(request: ArmRequest) -> tuple[str, SiteResource, SiteResource]:
    """``(group, production site, addressed site or slot)``; 404 in App Service's words."""
    path = request.path
    name = path.names[0] if path.names else ""
    found = _find_site(request, name, path.resource_group)
    if found is None:
        raise exceptions.ArmError(404, "ResourceNotFound",
                                  f"The Resource '{SITE_TYPE}/{name}' under resource group "
                                  f"'{path.resource_group}' was not found. For more details please go to "
                                  f"https://aka.ms/ARMResourceNotFoundFix")
    group, site = found
    target = site
    if path.resource_type.lower().startswith("sites/slots") and len(path.names) > 1:
        slot = path.names[1]
        target = site.slots.get(slot.lower())
        if target is None:
            raise exceptions.ArmError(404, "NotFound", f"Cannot find Slot with name {slot} in site {site.name}.")
    request.backend.operations.settle_resource(_site_id(path.subscription_id, group, site.name, target.slot))
    return group, site, target


def _settings_from(site_config: dict[str, Any]) -> dict[str, str]:
    pairs = site_config.get("appSettings") or []
    if not isinstance(pairs, list) or not all(isinstance(p, dict) and p.get("name") for p in pairs):
        raise exceptions.invalid_parameter_message(
            "'properties.siteConfig.appSettings' must be a list of {\"name\": ..., \"value\": ...} pairs.")
    return {str(p["name"]): "" if p.get("value") is None else str(p["value"]) for p in pairs}


def _check_fx(site_config: dict[str, Any]) -> None:
    fx = site_config.get("linuxFxVersion")
    if fx in (None, ""):
        return
    if not isinstance(fx, str) or not fx.upper().startswith("DOCKER|") or not fx.split("|", 1)[1].strip():
        raise exceptions.ArmError(
            400, "BadRequest",
            f"The linuxFxVersion '{str(fx)[:120]}' is not supported by the emulator: give a container as "
            f"'DOCKER|<registry>/<image>:<tag>' (built-in language stacks are not emulated).")


def _check_settings(settings: dict[str, str]) -> None:
    port = settings.get("WEBSITES_PORT")
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise exceptions.invalid_parameter_message(
            f"The app setting WEBSITES_PORT '{port[:20]}' is invalid: it must be a port number (1-65535).")


@PROVIDER.operation("PUT", SERVERFARMS, ITEM, summary="app_service_plans.begin_create_or_update")
async def create_plan(request: ArmRequest) -> ArmResponse:
    path = request.path
    plan = _validate_plan(path.name or "", request.json())
    existing = _find_plan(request, path.resource_group, plan.name)
    if existing is not None:
        plan.name = existing[1].name
        hosted = [s for _sub, _g, s in request.backend.resources(path.subscription_id, None, SITES)
                  if s.server_farm_id.lower() == _plan_id(path.subscription_id, existing[0], plan.name).lower()]
        slotted = max((len(s.slots) for s in hosted), default=0)
        if slotted > SLOT_LIMITS.get(plan.tier, 0):
            raise exceptions.conflict(
                f"Cannot change the plan '{plan.name}' to {plan.sku['name']}: its sites use {slotted} deployment "
                f"slot(s) and the {plan.tier} tier allows {SLOT_LIMITS.get(plan.tier, 0)}. Delete the slots first.")
    request.backend.add_resource(path.subscription_id, path.resource_group or "", SERVERFARMS, plan)
    return ArmResponse(plan_json(path.subscription_id, path.resource_group or "", plan, _site_count(request, plan)),
                       status=200)


def _site_count(request: ArmRequest, plan: PlanResource) -> int:
    return sum(1 for _s, group, site in request.backend.resources(request.path.subscription_id, None, SITES)
               if site.server_farm_id.rsplit("/", 1)[-1].lower() == plan.name.lower())


@PROVIDER.operation("GET", SERVERFARMS, ITEM, summary="app_service_plans.get")
async def get_plan(request: ArmRequest) -> dict[str, Any]:
    path = request.path
    found = _find_plan(request, path.resource_group, path.name or "")
    if found is None:
        raise exceptions.resource_not_found(PLAN_TYPE, path.name or "", path.resource_group or "")
    return plan_json(path.subscription_id, found[0], found[1], _site_count(request, found[1]))


@PROVIDER.operation("GET", SERVERFARMS, COLLECTION, summary="app_service_plans.list, app_service_plans.list_by_resource_group")
async def list_plans(request: ArmRequest) -> dict[str, Any]:
    path = request.path
    return {"value": [plan_json(path.subscription_id, group.name, plan, _site_count(request, plan))
                      for _s, group, plan in request.backend.resources(path.subscription_id, path.resource_group,
                                                                       SERVERFARMS)]}


@PROVIDER.operation("DELETE", SERVERFARMS, ITEM, summary="app_service_plans.delete")
async def delete_plan(request: ArmRequest) -> ArmResponse:
    path = request.path
    found = _find_plan(request, path.resource_group, path.name or "")
    if found is None:
        return ArmResponse(None, status=204)
    group, plan = found
    hosted = [s.name for _s, _g, s in request.backend.resources(path.subscription_id, None, SITES)
              if s.server_farm_id.lower() == _plan_id(path.subscription_id, group, plan.name).lower()]
    if hosted:
        raise exceptions.conflict(f"Server farm '{plan.name}' cannot be deleted because it has web app(s) "
                                  f"{', '.join(hosted)} assigned to it.")
    request.backend.remove_resource(path.subscription_id, group, SERVERFARMS, plan.name)
    return ArmResponse(None, status=200)


def _plan_for_site(request: ArmRequest, farm_id: Any) -> tuple[str, PlanResource]:
    if not isinstance(farm_id, str) or not farm_id:
        raise exceptions.invalid_parameter_message("'properties.serverFarmId' is required: the resource id of "
                                                   "the App Service plan to host the site.")
    parts = farm_id.strip("/").split("/")
    group = parts[3] if len(parts) >= 8 and parts[2].lower() == "resourcegroups" else request.path.resource_group
    found = _find_plan(request, group, parts[-1])
    if found is None:
        raise exceptions.ArmError(404, "NotFound", f"Cannot find ServerFarm with name {parts[-1]}.")
    return found


def _new_site(request: ArmRequest, name: str, body: Any, slot: str | None,
              parent: SiteResource | None) -> SiteResource:
    if not isinstance(body, dict):
        raise exceptions.invalid_request_content("the body must be a JSON object")
    location = body.get("location") or (parent.location if parent else None)
    if not isinstance(location, str) or not location:
        raise exceptions.ArmError(400, "LocationRequired", "The location property is required for this definition.")
    kind = str(body.get("kind") or (parent.kind if parent else "app")).lower()
    if kind not in SITE_KINDS:
        raise exceptions.invalid_parameter("kind", kind, SITE_KINDS)
    props = body.get("properties") or {}
    if not isinstance(props, dict):
        raise exceptions.invalid_request_content("'properties' must be a JSON object")
    site_config = props.get("siteConfig") or {}
    if not isinstance(site_config, dict):
        raise exceptions.invalid_request_content("'properties.siteConfig' must be a JSON object")
    _check_fx(site_config)
    settings = _settings_from(site_config)
    _check_settings(settings)
    farm = props.get("serverFarmId") or (parent.server_farm_id if parent else None)
    _group, plan = _plan_for_site(request, farm)
    if "linux" in kind and not plan.reserved:
        raise exceptions.ArmError(400, "BadRequest",
                                  f"The site '{name}' is a Linux site ({kind}) but the plan '{plan.name}' is a "
                                  f"Windows plan: create the plan with kind 'linux' and properties.reserved true.")
    return SiteResource(name=name, slot=slot, location=location, kind=kind, server_farm_id=farm,
                        site_config={k: v for k, v in site_config.items() if k != "appSettings"},
                        app_settings=settings,
                        properties={k: v for k, v in props.items() if k in ("httpsOnly", "clientAffinityEnabled")},
                        tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()})


def _begin_start(request: ArmRequest, group: str, production: SiteResource, site: SiteResource,
                 operation: str, status: int) -> ArmResponse:
    backend = request.backend
    _serve(backend, site)
    runtime = _start(backend, site) if site.state == "Running" else None
    site.provisioning_state = "InProgress"
    backend.save()

    def finished(error: exceptions.ArmError | None) -> None:
        site.provisioning_state = "Failed" if error else "Succeeded"
        backend.save()

    operation_ = backend.operations.begin(
        request, resource_type=SITE_TYPE if site.slot is None else SLOT_TYPE,
        resource_id=_site_id(request.path.subscription_id, group, production.name, site.slot),
        location=site.location, operation=operation, work=runtime.work if runtime else None, on_finish=finished,
        result=lambda: site_json(request.path.subscription_id, group, site))
    return backend.operations.accepted(request, operation_, site_json(request.path.subscription_id, group, site),
                                       status=status)


@PROVIDER.operation("PUT", SITES, ITEM, summary="web_apps.begin_create_or_update")
async def create_site(request: ArmRequest) -> ArmResponse:
    path = request.path
    name = path.name or ""
    if not _SITE_NAME.match(name):
        raise exceptions.invalid_parameter_message(
            f"The site name '{name[:80]}' is invalid: 2 to 60 letters, digits or '-', not starting or ending "
            f"with '-'.")
    existing = _find_site(request, name)
    if existing is not None and existing[0].lower() != (path.resource_group or "").lower():
        raise exceptions.conflict(f"Website with given name {name} already exists.")
    site = _new_site(request, existing[1].name if existing else name, request.json(), None, None)
    old = existing[1] if existing else None
    if old is not None:
        running = request.backend.operations.settle_resource(_site_id(path.subscription_id, existing[0], old.name))
        if running is not None and running.status == IN_PROGRESS:
            raise exceptions.conflict(f"The site '{old.name}' has an operation in progress; try again when it "
                                      f"has finished.")
        site.slots, site.host_port, site.scm_port = old.slots, old.host_port, old.scm_port
        site.publishing_password, site.servers, site.runtime, site.state = (
            old.publishing_password, old.servers, old.runtime, old.state)
        if not site.app_settings:  # a PUT without appSettings keeps the stored ones, as App Service
            site.app_settings = dict(old.app_settings)
    request.backend.add_resource(path.subscription_id, path.resource_group or "", SITES, site)
    if old is not None:  # the old object's front ends now serve the new one
        for server in site.servers:
            server.app.site = site
    return _begin_start(request, path.resource_group or "", site, site, UPDATE if old else CREATE,
                        status=200 if old else 202)


@PROVIDER.operation("PUT", "sites/slots", ITEM, summary="web_apps.begin_create_or_update_slot")
async def create_slot(request: ArmRequest) -> ArmResponse:
    path = request.path
    name = path.names[0]
    found = _find_site(request, name, path.resource_group)
    if found is None:
        raise exceptions.ArmError(404, "ParentResourceNotFound",
                                  f"Can not perform requested operation on nested resource. Parent resource "
                                  f"'{name}' not found.")
    group, production = found
    slot_name = (path.name or "").lower()
    if slot_name == PRODUCTION or not _SITE_NAME.match(slot_name):
        raise exceptions.invalid_parameter_message(f"The slot name '{path.name}' is invalid.")
    _pg, plan = _plan_for_site(request, production.server_farm_id)
    limit = SLOT_LIMITS.get(plan.tier, 0)
    old = production.slots.get(slot_name)
    if old is None and len(production.slots) >= limit:
        raise exceptions.conflict(
            f"Cannot create more than {limit} deployment slots for the {plan.tier} tier of the App Service plan "
            f"'{plan.name}'. Scale the plan up to Standard or above to use slots.")
    slot = _new_site(request, production.name, request.json(), slot_name, production)
    if old is not None:
        slot.host_port, slot.scm_port, slot.publishing_password = old.host_port, old.scm_port, old.publishing_password
        slot.servers, slot.runtime, slot.state = old.servers, old.runtime, old.state
        if not slot.app_settings:
            slot.app_settings = dict(old.app_settings)
        for server in slot.servers:
            server.app.site = slot
    production.slots[slot_name] = slot
    return _begin_start(request, group, production, slot, UPDATE if old else CREATE, status=200 if old else 202)


@PROVIDER.operation("GET", SITES, ITEM, summary="web_apps.get")
@PROVIDER.operation("GET", "sites/slots", ITEM, summary="web_apps.get_slot")
async def get_site(request: ArmRequest) -> dict[str, Any]:
    group, _production, site = _site_of(request)
    return site_json(request.path.subscription_id, group, site)


@PROVIDER.operation("GET", SITES, COLLECTION, summary="web_apps.list, web_apps.list_by_resource_group")
async def list_sites(request: ArmRequest) -> dict[str, Any]:
    path = request.path
    return {"value": [site_json(path.subscription_id, group.name, site)
                      for _s, group, site in request.backend.resources(path.subscription_id, path.resource_group,
                                                                       SITES)]}


@PROVIDER.operation("GET", "sites/slots", COLLECTION, summary="web_apps.list_slots")
async def list_slots(request: ArmRequest) -> dict[str, Any]:
    group, production, _site = _site_of(request)
    return {"value": [site_json(request.path.subscription_id, group, slot) for slot in production.slots.values()]}


def _apply_config(request: ArmRequest, site: SiteResource, *, site_config: dict[str, Any] | None = None,
                  settings: dict[str, str] | None = None) -> None:
    """Change what the container runs with; App Service restarts the site when either changes."""
    new_config = dict(site.site_config) if site_config is None else site_config
    new_settings = dict(site.app_settings) if settings is None else settings
    _check_fx(new_config)
    _check_settings(new_settings)
    changed = new_config.get("linuxFxVersion") != site.site_config.get("linuxFxVersion") or \
        new_settings != site.app_settings
    site.site_config, site.app_settings = new_config, new_settings
    if changed and site.state == "Running":
        _start(request.backend, site)
    request.backend.save()


@PROVIDER.operation("PATCH", SITES, ITEM, summary="web_apps.update")
@PROVIDER.operation("PATCH", "sites/slots", ITEM, summary="web_apps.update_slot")
async def update_site(request: ArmRequest) -> dict[str, Any]:
    group, _production, site = _site_of(request)
    body = request.json() or {}
    props = body.get("properties") or {} if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise exceptions.invalid_request_content("PATCH takes {\"properties\": {...}}")
    if "serverFarmId" in props:
        _plan_for_site(request, props["serverFarmId"])
        site.server_farm_id = props["serverFarmId"]
    for key in ("httpsOnly", "clientAffinityEnabled"):
        if key in props:
            site.properties[key] = props[key]
    if isinstance(body.get("tags"), dict):
        site.tags = {str(k): str(v) for k, v in body["tags"].items()}
    config = props.get("siteConfig")
    if isinstance(config, dict):
        merged = {**site.site_config, **{k: v for k, v in config.items() if k != "appSettings" and v is not None}}
        _apply_config(request, site, site_config=merged,
                      settings=_settings_from(config) if config.get("appSettings") else None)
    request.backend.save()
    return site_json(request.path.subscription_id, group, site)


@PROVIDER.operation("DELETE", SITES, ITEM, summary="web_apps.delete")
@PROVIDER.operation("DELETE", "sites/slots", ITEM, summary="web_apps.delete_slot")
async def delete_site(request: ArmRequest) -> ArmResponse:
    path = request.path
    try:
        group, production, site = _site_of(request)
    except exceptions.ArmError as error:
        if error.status == 404:
            return ArmResponse(None, status=204)
        raise
    for each in site.all_slots() if site.slot is None else [site]:
        _stop(each)
        _unserve(each)
    if site.slot is None:
        request.backend.remove_resource(path.subscription_id, group, SITES, site.name)
        if request.query.get("deleteEmptyServerFarm", "").lower() == "true":
            _delete_plan_if_empty(request, site.server_farm_id)
    else:
        production.slots.pop(site.slot, None)
        request.backend.save()
    return ArmResponse(None, status=200)


def _delete_plan_if_empty(request: ArmRequest, farm_id: str) -> None:
    """``deleteEmptyServerFarm=true``: the plan goes too when no other site uses it."""
    path = request.path
    if any(s.server_farm_id.lower() == farm_id.lower()
           for _s, _g, s in request.backend.resources(path.subscription_id, None, SITES)):
        return
    parts = farm_id.strip("/").split("/")
    if len(parts) >= 8:
        request.backend.remove_resource(path.subscription_id, parts[3], SERVERFARMS, parts[-1])


@PROVIDER.operation("POST", SITES, "stop", summary="web_apps.stop")
@PROVIDER.operation("POST", "sites/slots", "stop", summary="web_apps.stop_slot")
async def stop_site(request: ArmRequest) -> ArmResponse:
    _group, _production, site = _site_of(request)
    site.state = "Stopped"
    _stop(site)
    request.backend.save()
    return ArmResponse(None, status=200)


@PROVIDER.operation("POST", SITES, "start", summary="web_apps.start")
@PROVIDER.operation("POST", "sites/slots", "start", summary="web_apps.start_slot")
async def start_site(request: ArmRequest) -> ArmResponse:
    _group, _production, site = _site_of(request)
    if site.state != "Running" or site.runtime is None:
        site.state = "Running"
        _start(request.backend, site)
        request.backend.save()
    return ArmResponse(None, status=200)


def _config_name(request: ArmRequest) -> str:
    return (request.path.names[-1] if request.path.names else "").lower()


def _string_dictionary(request: ArmRequest, group: str, site: SiteResource, values: dict[str, str]) -> dict[str, Any]:
    return {"id": _site_id(request.path.subscription_id, group, site.name, site.slot) + "/config/appsettings",
            "name": "appsettings", "type": f"{SITE_TYPE}/config", "location": site.location,
            "properties": dict(values)}


def _config_resource(request: ArmRequest, group: str, site: SiteResource) -> dict[str, Any]:
    shown = {"numberOfWorkers": 1, "alwaysOn": False, "http20Enabled": False, "linuxFxVersion": "",
             **{k: v for k, v in site.site_config.items() if k != "appSettings"}}
    return {"id": _site_id(request.path.subscription_id, group, site.name, site.slot) + "/config/web",
            "name": "web", "type": f"{SITE_TYPE}/config", "location": site.location, "properties": shown}


@PROVIDER.operation("PUT", "sites/config", ITEM, summary="web_apps.update_application_settings, "
                                                         "web_apps.create_or_update_configuration")
@PROVIDER.operation("PUT", "sites/slots/config", ITEM, summary="web_apps.update_application_settings_slot, "
                                                               "web_apps.create_or_update_configuration_slot")
@PROVIDER.operation("PATCH", "sites/config", ITEM, summary="web_apps.update_configuration")
@PROVIDER.operation("PATCH", "sites/slots/config", ITEM, summary="web_apps.update_configuration_slot")
async def put_config(request: ArmRequest) -> dict[str, Any]:
    group, _production, site = _site_of(request)
    body = request.json()
    which = _config_name(request)
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise exceptions.invalid_request_content("the body must be {\"properties\": {...}}")
    if which == "appsettings" and request.method == "PUT":
        settings = {str(k): "" if v is None else str(v) for k, v in props.items()}
        _apply_config(request, site, settings=settings)  # an update replaces the whole set
        return _string_dictionary(request, group, site, site.app_settings)
    if which == "web":
        given = {k: v for k, v in props.items() if k != "appSettings" and v is not None}
        config = {**site.site_config, **given} if request.method == "PATCH" else given
        _apply_config(request, site, site_config=config)
        return _config_resource(request, group, site)
    raise exceptions.not_implemented(f"{request.method} {SITE_TYPE}/config/{which}")


@PROVIDER.operation("GET", "sites/config", ITEM, summary="web_apps.get_configuration")
@PROVIDER.operation("GET", "sites/slots/config", ITEM, summary="web_apps.get_configuration_slot")
async def get_config(request: ArmRequest) -> dict[str, Any]:
    group, _production, site = _site_of(request)
    if _config_name(request) != "web":
        raise exceptions.not_implemented(f"GET {SITE_TYPE}/config/{_config_name(request)}")
    return _config_resource(request, group, site)


@PROVIDER.operation("POST", "sites/config", "list", summary="web_apps.list_application_settings, "
                                                            "web_apps.begin_list_publishing_credentials")
@PROVIDER.operation("POST", "sites/slots/config", "list", summary="web_apps.list_application_settings_slot, "
                                                                  "web_apps.begin_list_publishing_credentials_slot")
async def list_config(request: ArmRequest) -> dict[str, Any]:
    group, _production, site = _site_of(request)
    which = _config_name(request)
    if which == "appsettings":
        return _string_dictionary(request, group, site, site.app_settings)
    if which == "publishingcredentials":
        return {"id": _site_id(request.path.subscription_id, group, site.name, site.slot)
                + "/config/publishingcredentials", "name": site.name,
                "type": f"{SITE_TYPE}/config/publishingcredentials",
                "properties": {"publishingUserName": site.publishing_user,
                               "publishingPassword": site.publishing_password,
                               "scmUri": f"https://{site.publishing_user}:{site.publishing_password}@{site.scm_host}"}}
    raise exceptions.not_implemented(f"POST {SITE_TYPE}/config/{which}/list")


@PROVIDER.operation("POST", SITES, "slotsswap", summary="web_apps.begin_swap_slot_with_production")
@PROVIDER.operation("POST", "sites/slots", "slotsswap", summary="web_apps.begin_swap_slot")
async def swap_slots(request: ArmRequest) -> ArmResponse:
    group, production, source = _site_of(request)
    body = request.json()
    target_name = body.get("targetSlot") if isinstance(body, dict) else None
    if not isinstance(target_name, str) or not target_name:
        raise exceptions.invalid_parameter_message("'targetSlot' is required: the slot to swap with "
                                                   "('production' for the site itself).")
    target = production if target_name.lower() == PRODUCTION else production.slots.get(target_name.lower())
    if target is None:
        raise exceptions.ArmError(404, "NotFound", f"Cannot find Slot with name {target_name} in site "
                                                   f"{production.name}.")
    if target is source:
        raise exceptions.invalid_parameter_message(f"Cannot swap slot '{target_name}' with itself.")
    backend = request.backend
    swapped = threading.Event()

    def work() -> WorkStatus:
        # App Service warms the source slot (its container answers) before it routes traffic to it
        for side in (source, target):
            runtime = side.runtime
            if runtime is not None and not runtime.ready.is_set():
                return WorkStatus.pending()
        if source.runtime is not None and source.runtime.status != "Running":
            return WorkStatus.failed(exceptions.conflict(
                f"Cannot swap: the container of slot '{source.slot or PRODUCTION}' is not running "
                f"({source.runtime.failure or source.runtime.status})."))
        if not swapped.is_set():
            source.runtime, target.runtime = target.runtime, source.runtime
            source.site_config, target.site_config = target.site_config, source.site_config
            source.app_settings, target.app_settings = target.app_settings, source.app_settings
            swapped.set()
            backend.save()
        return WorkStatus.finished()

    operation = backend.operations.begin(
        request, resource_type=SITE_TYPE,
        resource_id=_site_id(request.path.subscription_id, group, production.name, source.slot) + "/slotsswap",
        location=production.location, operation="slotsswap", work=work)
    return backend.operations.accepted(request, operation, None, status=202)


# -- function apps: host and function keys ---------------------------------------------------
#
# The real platform keeps a function app's keys with its host (in the AzureWebJobsStorage
# account) and learns the app's functions when its host syncs triggers. Here the site keeps
# the keys in the ARM state, learns the functions from the image (label
# ``org.aml.functions.functions``, written by the Functions packager) when its container
# starts, and hands the host its keys in the container's environment variable
# ``AML_FUNCTIONS_KEYS`` (not an app setting, so no ARM answer shows it).

FUNCTIONS_KEYS_SETTING = "AML_FUNCTIONS_KEYS"
FUNCTIONS_LABEL = "org.aml.functions.functions"


def _new_function_key() -> str:
    # the length and alphabet of the keys the Functions host generates (base64 of 40 bytes)
    return base64.urlsafe_b64encode(secrets.token_bytes(40)).decode().rstrip("=") + "=="


def _ensure_functions_keys(site: SiteResource, functions: list[str]) -> dict[str, Any]:
    keys = site.functions_keys
    keys.setdefault("masterKey", _new_function_key())
    keys.setdefault("functionKeys", {"default": _new_function_key()})
    keys.setdefault("systemKeys", {})
    per_function = keys.setdefault("functions", {})
    for name in functions:
        per_function.setdefault(name, {"default": _new_function_key()})
    return keys


def _functions_env(backend: Any, site: SiteResource, image: Any) -> dict[str, str]:
    import json

    labels = image.labels() if hasattr(image, "labels") else {}
    try:
        functions = [str(n) for n in json.loads(labels.get(FUNCTIONS_LABEL) or "[]")]
    except ValueError:
        functions = []
    keys = _ensure_functions_keys(site, functions)
    backend.save()
    return {FUNCTIONS_KEYS_SETTING: json.dumps(keys)}


def _require_function_app(site: SiteResource) -> None:
    if not site.kind.startswith("functionapp"):
        raise exceptions.ArmError(400, "BadRequest", f"The site '{site.name}' is a web app ({site.kind}), not a "
                                                     f"function app: it has no host or function keys.")


@PROVIDER.operation("POST", "sites/host", "listkeys", summary="web_apps.list_host_keys")
@PROVIDER.operation("POST", "sites/slots/host", "listkeys", summary="web_apps.list_host_keys_slot")
async def list_host_keys(request: ArmRequest) -> dict[str, Any]:
    _group, _production, site = _site_of(request)
    _require_function_app(site)
    keys = _ensure_functions_keys(site, [])
    request.backend.save()
    return {"masterKey": keys["masterKey"], "functionKeys": dict(keys["functionKeys"]),
            "systemKeys": dict(keys["systemKeys"])}


@PROVIDER.operation("POST", "sites/functions", "listkeys", summary="web_apps.list_function_keys")
@PROVIDER.operation("POST", "sites/slots/functions", "listkeys", summary="web_apps.list_function_keys_slot")
async def list_function_keys(request: ArmRequest) -> dict[str, Any]:
    group, _production, site = _site_of(request)
    _require_function_app(site)
    function = request.path.names[-1]
    known = {name.lower(): name for name in (site.functions_keys.get("functions") or {})}
    if function.lower() not in known:
        raise exceptions.ArmError(404, "NotFound", f"Error retrieving function '{function}' of site '{site.name}': "
                                                   f"the function app has no such function (yet: its functions are "
                                                   f"known once its container has started).")
    return {"id": _site_id(request.path.subscription_id, group, site.name, site.slot) + f"/functions/{function}",
            "name": function, "type": f"{SITE_TYPE}/functions",
            "properties": dict(site.functions_keys["functions"][known[function.lower()]])}


register_status_routes(PROVIDER, summary="app_service_plans.begin_create_or_update, web_apps.begin_create_or_update, "
                                         "web_apps.begin_create_or_update_slot, web_apps.begin_swap_slot, "
                                         "web_apps.begin_swap_slot_with_production")

__all__ = ["PROVIDER", "PlanResource", "SiteResource", "plan_json", "site_json"]
