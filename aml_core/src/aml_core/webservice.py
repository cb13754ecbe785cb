"""Web services: deploy, find, call, update and delete them, whatever the target.

A :class:`Webservice` is a handle on a row of the workspace's ``services`` table; every
operation goes through the typed hook facade to the provider of the service's kind.
``Model.deploy`` returns at once with the service in state ``Transitioning`` while the
provider works in a background thread; ``wait_for_deployment`` shows its progress.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
from typing import Any, Callable, Iterable

import attrs
import requests

from aml_core.errors import (
    AmlError,
    Conflict,
    DeploymentTimeout,
    InvalidConfig,
    NotFound,
    WebserviceException,
)
from aml_core.inference import InferenceConfig
from aml_core.model import model_record
from aml_core.plugins import Hooks, default_hooks
from aml_core.records import AuthRequest, DeploymentSpec, ImageRecord, ServiceRecord, utcnow
from aml_core.serialization import service_from_dict, to_dict, to_json
from aml_core.workspace import Workspace

SERVICE_NAME_RULE = (
    "a service name is 3-32 characters of lowercase letters, digits and dashes, "
    "starting with a letter and not ending with a dash"
)
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
TRANSITIONAL_STATES = {"Transitioning", "deploying", "updating"}
#: seconds a step may be quiet before progress output repeats it with its elapsed time
HEARTBEAT_S = 10.0
#: states of a service whose last deployment failed (providers use either spelling)
FAILED_STATES = {"Failed", "failed"}


def _string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidConfig(f"{what} must be a dict of strings, got {type(value).__name__}.")
    return {str(k): str(v) for k, v in value.items()}


def validate_service_name(name: object) -> str:
    if not isinstance(name, str) or not _SERVICE_NAME.match(name):
        raise InvalidConfig(f"Invalid service name {name!r}: {SERVICE_NAME_RULE}.")
    return name


class WebserviceNotFound(NotFound):
    """No service of that name exists in the workspace."""


# -- persistence -------------------------------------------------------------------------


def _load_row(workspace: Workspace, name: str) -> tuple[ServiceRecord, dict | None] | None:
    with workspace.reading() as db:
        row = db.execute("SELECT record, spec FROM services WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    return service_from_dict(json.loads(row["record"])), (json.loads(row["spec"]) if row["spec"] else None)


def _store(workspace: Workspace, record: ServiceRecord, spec: dict | None = None, *, release: bool = True) -> None:
    with workspace.transaction() as db:
        exists = db.execute("SELECT spec FROM services WHERE name = ?", (record.name,)).fetchone()
        if exists is None:
            db.execute(
                "INSERT INTO services (name, kind, record, spec, operation) VALUES (?, ?, ?, ?, NULL)",
                (record.name, record.kind, to_json(record), json.dumps(spec) if spec else None),
            )
        else:
            db.execute(
                "UPDATE services SET kind = ?, record = ?, spec = COALESCE(?, spec)"
                + (", operation = NULL" if release else "")
                + " WHERE name = ?",
                (record.kind, to_json(record), json.dumps(spec) if spec else None, record.name),
            )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _begin_operation(workspace: Workspace, name: str, op: str, *, create: ServiceRecord | None = None) -> ServiceRecord | None:
    """Mark an operation in flight on ``name``; a second one at the same time is a Conflict.

    Returns the current record (``None`` if the service is new, in which case ``create``
    is inserted as a placeholder so a racing deploy of the same name sees it).
    """
    marker = json.dumps({"op": op, "pid": os.getpid(), "thread": threading.get_ident(), "since": time.time()})
    with workspace.transaction() as db:
        row = db.execute("SELECT record, operation FROM services WHERE name = ?", (name,)).fetchone()
        if row is not None and row["operation"]:
            current = json.loads(row["operation"])
            if _pid_alive(int(current.get("pid", 0))):
                raise Conflict(
                    f"Another operation ({current.get('op')}) is already in progress on service {name!r}. "
                    f"Wait for it to finish (service.wait_for_deployment()) and try again."
                )
        if row is None:
            if create is not None:
                db.execute(
                    "INSERT INTO services (name, kind, record, spec, operation) VALUES (?, ?, ?, NULL, ?)",
                    (name, create.kind, to_json(create), marker),
                )
            return None
        db.execute("UPDATE services SET operation = ? WHERE name = ?", (marker, name))
        return service_from_dict(json.loads(row["record"]))


def _operation_marked(workspace: Workspace, name: str) -> bool:
    """Whether an operation on ``name`` is marked in flight (by any thread or process)."""
    with workspace.reading() as db:
        row = db.execute("SELECT operation FROM services WHERE name = ?", (name,)).fetchone()
    return row is not None and bool(row["operation"])


def _release(workspace: Workspace, name: str) -> None:
    with workspace.transaction() as db:
        db.execute("UPDATE services SET operation = NULL WHERE name = ?", (name,))


# -- specs -------------------------------------------------------------------------------


def _spec_to_dict(spec: DeploymentSpec) -> dict[str, Any]:
    return {
        "kind": spec.kind,
        "models": [m.id for m in spec.models],
        "inference_config": spec.inference_config.to_dict() if spec.inference_config else None,
        "deployment_config": spec.deployment_config.to_dict() if spec.deployment_config is not None else None,
        "compute_target": spec.compute_target,
        "image": f"{spec.image.name}:{spec.image.version}" if spec.image is not None else None,
    }


def _spec_from_dict(workspace: Workspace, hooks: Hooks, name: str, data: dict[str, Any]) -> DeploymentSpec:
    from aml_core import registry

    models = []
    for model_id in data["models"]:
        model_name, _, version = model_id.partition(":")
        models.append(registry.get_model(workspace, model_name, int(version)))
    config_cls = hooks.target(data["kind"]).deployment_config_class
    deployment_config = config_cls.from_dict(data["deployment_config"]) if data.get("deployment_config") else None
    inference = InferenceConfig.from_dict(data["inference_config"]) if data.get("inference_config") else None
    image = None
    if data.get("image"):
        from aml_core.images import Image

        image = Image(workspace, id=data["image"]).record
    return DeploymentSpec(
        name=name,
        kind=data["kind"],
        models=tuple(models),
        inference_config=inference,
        deployment_config=deployment_config,
        compute_target=data.get("compute_target"),
        image=image,
    )


# -- operations in the background --------------------------------------------------------


class Operation:
    """A long provider call run in a thread, with its progress messages."""

    def __init__(self, label: str, work: Callable[[Callable[[str], None]], ServiceRecord]) -> None:
        self.label = label
        self.messages: "queue.Queue[tuple[float, str]]" = queue.Queue()
        self.result: ServiceRecord | None = None
        self.error: BaseException | None = None
        self._step: tuple[float, str] | None = None
        self._last_shown = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), name=f"aml-{label}", daemon=False)

    def progress(self, text: str) -> None:
        self.messages.put((time.time(), text))

    def drain(self, now: float | None = None) -> list[tuple[float, str]]:
        """The progress messages since the last call; when the current step has been quiet
        for :data:`HEARTBEAT_S`, one more saying how long it has taken (a long ``init()``
        shows its elapsed time instead of looking stuck)."""
        now = time.time() if now is None else now
        out: list[tuple[float, str]] = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                break
        if out:
            self._step = out[-1]
            self._last_shown = now
        elif self._step is not None and self.running and now - self._last_shown >= HEARTBEAT_S:
            started, text = self._step
            out.append((now, f"{text} ... still running, {now - started:.0f} s so far"))
            self._last_shown = now
        return out

    def start(self) -> "Operation":
        self._thread.start()
        return self

    def _run(self, work) -> None:
        try:
            self.result = work(self.progress)
        except BaseException as exc:  # reported to whoever waits on the operation
            self.error = exc
        finally:
            self._done.set()

    def join(self, timeout: float | None) -> bool:
        # Wait on an Event, not Thread.join(timeout): on Python 3.11 a Ctrl-C that lands in
        # join(timeout) marks the still-running thread as finished, and the interpreter
        # would then exit under the provider, leaving the service half-recorded.
        if not self._done.wait(timeout):
            return False
        self._thread.join()
        return True

    @property
    def running(self) -> bool:
        return not self._done.is_set()


# -- the handle --------------------------------------------------------------------------


class Webservice:
    """A deployed service. ``Webservice(ws, name)`` returns the subclass for its target kind."""

    @staticmethod
    def deploy_from_image(workspace: Workspace, name: str, image: Any, deployment_config: Any = None,
                          deployment_target: Any = None, overwrite: bool = False,
                          show_output: bool = False) -> "Webservice":
        """Deploy a packaged image as service ``name`` on any target (azureml-core's legacy
        ``Webservice.deploy_from_image``); see :func:`deploy_from_image`."""
        return deploy_from_image(workspace, name, image, deployment_config, deployment_target,
                                 overwrite=overwrite, show_output=show_output)

    #: the target kind a subclass serves (``None`` on the generic class)
    _webservice_type: str | None = None

    def __new__(cls, workspace: Workspace, name: str) -> "Webservice":
        loaded = _load_row(workspace, name)
        if loaded is None:
            raise WebserviceNotFound(
                f"WebserviceNotFound: there is no service named {name!r} in workspace {workspace.name!r}. "
                f"See `aml service list`."
            )
        record, _ = loaded
        target_cls: type[Webservice] = cls
        if cls is Webservice:
            kind = default_hooks().kinds.get(record.kind)
            if kind is not None and kind.webservice_class is not None:
                target_cls = kind.webservice_class
        elif cls._webservice_type and record.kind != cls._webservice_type:
            raise WebserviceNotFound(
                f"Service {name!r} is a {record.kind} service, not {cls._webservice_type}. Use Webservice(ws, {name!r})."
            )
        obj = object.__new__(target_cls)
        obj._bind(workspace, record)
        return obj

    def __init__(self, workspace: Workspace, name: str) -> None:
        """Fields are set by ``__new__``; this only exists for the documented signature."""

    def _bind(self, workspace: Workspace, record: ServiceRecord, operation: Operation | None = None) -> None:
        self.workspace = workspace
        self._record = record
        self._operation = operation
        self._session = requests.Session()

    @classmethod
    def _handle(cls, workspace: Workspace, record: ServiceRecord, operation: Operation | None = None) -> "Webservice":
        kind = default_hooks().kinds.get(record.kind)
        target_cls = kind.webservice_class if kind is not None and kind.webservice_class else Webservice
        obj = object.__new__(target_cls)
        obj._bind(workspace, record, operation)
        return obj

    # -- attributes --------------------------------------------------------------------

    name = property(lambda self: self._record.name)
    compute_type = property(lambda self: self._record.kind)
    state = property(lambda self: self._record.state)
    scoring_uri = property(lambda self: self._record.scoring_uri)
    swagger_uri = property(lambda self: self._record.swagger_uri)
    error = property(lambda self: self._record.error)
    tags = property(lambda self: dict(self._record.tags))
    properties = property(lambda self: dict(self._record.properties))
    created_time = property(lambda self: self._record.created_time)
    updated_time = property(lambda self: self._record.updated_time)
    auth_enabled = property(lambda self: self._record.auth_mode == "key")
    token_auth_enabled = property(lambda self: self._record.auth_mode == "token")
    record = property(lambda self: self._record)

    @property
    def models(self) -> list[str]:
        return list(self._record.models)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(workspace={self.workspace.name!r}, name={self.name!r}, "
            f"compute_type={self.compute_type!r}, state={self.state!r}, scoring_uri={self.scoring_uri!r})"
        )

    def serialize(self) -> dict[str, Any]:
        return to_dict(self._record)

    @staticmethod
    def deserialize(workspace: Workspace, webservice_payload: dict[str, Any]) -> "Webservice":
        """A handle from ``serialize()``'s output (the target's subclass)."""
        try:
            record = service_from_dict(webservice_payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidConfig(f"Not a serialized service ({type(exc).__name__}: {exc}); pass what "
                                f"service.serialize() returned.") from None
        return Webservice._handle(workspace, record)

    # -- metadata (no rollout: only the stored record changes) --------------------------

    def add_tags(self, tags: dict[str, str]) -> None:
        """Add tags (or change their values)."""
        new = _string_map(tags, "tags")
        self._edit_metadata(lambda r: attrs.evolve(r, tags={**r.tags, **new}))

    def remove_tags(self, tags: Iterable[str]) -> None:
        """Remove the tags with these keys (keys that are not there are ignored)."""
        if isinstance(tags, str) or not all(isinstance(k, str) for k in tags):
            raise InvalidConfig("remove_tags takes a list of tag keys, e.g. ['stage'].")
        drop = set(tags)
        self._edit_metadata(lambda r: attrs.evolve(r, tags={k: v for k, v in r.tags.items() if k not in drop}))

    def add_properties(self, properties: dict[str, str]) -> None:
        """Add properties (or change their values)."""
        new = _string_map(properties, "properties")
        self._edit_metadata(lambda r: attrs.evolve(r, properties={**r.properties, **new}))

    def _edit_metadata(self, change: Callable[[ServiceRecord], ServiceRecord]) -> None:
        with self.workspace.transaction() as db:
            row = db.execute("SELECT record FROM services WHERE name = ?", (self.name,)).fetchone()
            if row is None:
                raise WebserviceNotFound(f"Service {self.name!r} has been deleted.")
            updated = change(service_from_dict(json.loads(row["record"])))
            db.execute("UPDATE services SET record = ? WHERE name = ?", (to_json(updated), self.name))
        self._record = updated

    # -- lifecycle ---------------------------------------------------------------------

    def _reload(self) -> ServiceRecord:
        loaded = _load_row(self.workspace, self.name)
        if loaded is None:
            raise WebserviceNotFound(f"Service {self.name!r} has been deleted.")
        self._record = loaded[0]
        return self._record

    def update_deployment_state(self) -> str:
        """Ask the provider for the service's current state and remember it."""
        record = self._reload()
        ours = self._operation is not None and self._operation.running
        if record.state in TRANSITIONAL_STATES and (ours or _operation_marked(self.workspace, self.name)):
            # An operation (this handle's, or another thread's or process's) is working on
            # it; report what is stored. A transitional state with no operation in flight is
            # the provider's own report (a scale or rollout under way): ask it again.
            return record.state
        try:
            refreshed = default_hooks().status(workspace=self.workspace, service=record)
        except Exception:
            if record.state in FAILED_STATES:
                # A deployment that failed part-way may have left the provider too little to
                # ask about; what is stored (state and error) is the answer, so list and show
                # keep working on it.
                return record.state
            raise
        if refreshed != record:
            _store(self.workspace, refreshed, release=False)
        self._record = refreshed
        return refreshed.state

    def wait_for_deployment(self, show_output: bool = False, timeout_sec: float | None = None) -> None:
        """Block until the deployment finishes; with ``show_output``, print its progress."""
        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        printer = _progress_printer() if show_output else None
        operation = self._operation
        if operation is not None:
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                done = operation.join(0.1 if remaining is None else min(0.1, remaining))
                for stamp, text in operation.drain():
                    if printer:
                        printer(stamp, text)
                if done:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeploymentTimeout(
                        f"Deployment of {self.name!r} did not finish within {timeout_sec} s. It goes on in the "
                        f"background: call update_deployment_state() later to see its state."
                    )
            self._operation = None
            self._reload()
            if operation.error is not None:
                if printer:
                    printer(time.time(), f"Failed: {operation.error}")
                raise operation.error
            if printer:
                printer(time.time(), f"Succeeded: service {self.name!r} is {self.state} at {self.scoring_uri}")
            return
        while self.update_deployment_state() in TRANSITIONAL_STATES:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeploymentTimeout(
                    f"Service {self.name!r} is still {self.state} after {timeout_sec} s; call "
                    f"update_deployment_state() later."
                )
            time.sleep(0.2)
        if printer:
            printer(time.time(), f"Service {self.name!r} is {self.state}")

    def _require_usable(self, what: str) -> None:
        if self._operation is not None and self._operation.running:
            self.wait_for_deployment()
        if self.state == "Deleted":
            raise AmlError(f"Cannot call {what}() when service is deleted.")

    def run(self, input_data: Any) -> Any:
        """Score one request; returns the decoded JSON response."""
        self._require_usable("run")
        if not self.scoring_uri:
            raise WebserviceException(
                f"Service {self.name!r} has no scoring URI (state {self.state}, error {self.error!r}). "
                f"Check service.get_logs()."
            )
        if isinstance(input_data, (bytes, str)):
            body = input_data
        else:
            body = json.dumps(input_data)
        for attempt in (1, 2):
            headers = {"Content-Type": "application/json"}
            auth = self._auth_header(refresh=attempt == 2)
            if auth:
                headers["Authorization"] = auth
            try:
                # a target whose https certificate is signed by a private CA (the emulator's
                # App Service hosts) names that CA in the record; others use the system's trust
                verify = self._record.details.get("ca_bundle") or True
                response = self._session.post(self.scoring_uri, data=body, headers=headers, timeout=300,
                                              verify=verify)
            except requests.ConnectionError as exc:
                raise WebserviceException(
                    f"Could not reach service {self.name!r} at {self.scoring_uri}: {exc}. "
                    f"Check service.state and service.get_logs()."
                ) from exc
            if response.status_code == 401 and attempt == 1 and auth:
                continue
            break
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError:
                return response.text
        # The body as text (what the user's run() or the server said), not a bytes repr; the
        # headers are on the exception for code that wants them, not in the message.
        text = response.content[:2000].decode("utf-8", errors="replace").strip() or "(empty)"
        error = WebserviceException(
            f"Received bad response from service {self.name!r}. More information can be found by calling "
            f".get_logs() on the webservice object.\nResponse Code: {response.status_code} {response.reason or ''}"
            f"\nContent: {text}"
        )
        error.status_code, error.headers, error.content = response.status_code, dict(response.headers), response.content
        raise error

    def _auth_header(self, refresh: bool = False) -> str | None:
        mode = self._record.auth_mode
        if mode == "key":
            if refresh or not getattr(self, "_key", None):
                self._key = self.get_keys()[0]
            return f"Bearer {self._key}"
        if mode == "token":
            if refresh or not getattr(self, "_token", None):
                self._token = self.get_token()[0]
            return f"Bearer {self._token}"
        return None

    def get_logs(self, num_lines: int = 5000, init: bool = False) -> str:
        self._require_usable("get_logs")
        return default_hooks().logs(workspace=self.workspace, service=self._reload(), num_lines=num_lines, init=init)

    def update(self, models: Iterable[Any] | None = None, inference_config: InferenceConfig | None = None,
               deployment_config: Any = None, wait: bool = True, show_output: bool = False, image: Any = None,
               **settings: Any) -> None:
        """Replace the service's models, code, image or settings; blocks unless ``wait=False``.

        A service deployed from an image (``deploy_from_image``) is updated with ``image=``,
        one deployed from an InferenceConfig with ``models``/``inference_config``: the two
        cannot be mixed, as in azureml-core.
        """
        self._require_usable("update")
        hooks = default_hooks()
        loaded = _load_row(self.workspace, self.name)
        if loaded is None or loaded[1] is None:
            raise WebserviceNotFound(f"Service {self.name!r} has no stored deployment to update.")
        current, spec_data = loaded
        spec = _spec_from_dict(self.workspace, hooks, self.name, spec_data)
        if (models is None and inference_config is None and deployment_config is None and image is None
                and not settings):
            raise InvalidConfig("No parameters provided to update.")
        changes: dict[str, Any] = {}
        if image is not None:
            if inference_config is not None or models is not None:
                raise InvalidConfig("update(): give either image= or models=/inference_config=, not both: an image "
                                    "already holds its models, entry script and environment.")
            if spec.image is None:
                raise InvalidConfig(f"Service {self.name!r} was deployed from an InferenceConfig, so it cannot be "
                                    f"updated with an image; update it with inference_config= (and models=), or "
                                    f"delete it and use Webservice.deploy_from_image.")
            record = _image_record(image)
            changes.update(image=record, models=_image_models(self.workspace, record))
        elif spec.image is not None and (inference_config is not None or models is not None):
            raise InvalidConfig(f"Service {self.name!r} was deployed from image {spec.image.name}:{spec.image.version}, "
                                f"so it cannot be updated with an InferenceConfig or models; package a new image "
                                f"and pass image=.")
        if models is not None:
            changes["models"] = tuple(model_record(m) for m in models)
        if inference_config is not None:
            inference_config.validate_entry_script()
            changes["inference_config"] = inference_config
        config = deployment_config if deployment_config is not None else spec.deployment_config
        if settings:
            if config is None or not hasattr(config, "evolve_settings"):
                raise InvalidConfig(f"update() got unknown arguments: {', '.join(sorted(settings))}.")
            config = config.evolve_settings(**settings)
        changes["deployment_config"] = config
        new_spec = attrs.evolve(spec, **changes)
        _begin_operation(self.workspace, self.name, "update")

        def work(progress: Callable[[str], None]) -> ServiceRecord:
            try:
                record = hooks.update(
                    workspace=self.workspace, service=current, spec=attrs.evolve(new_spec, progress=progress)
                )
            except BaseException:
                _release(self.workspace, self.name)
                raise
            _store(self.workspace, record, _spec_to_dict(new_spec))
            return record

        self._operation = Operation(f"update-{self.name}", work).start()
        if wait or show_output:
            self.wait_for_deployment(show_output=show_output)

    def scale(self, num_replicas: int | None = None, autoscale_enabled: bool | None = None,
              autoscale_min_replicas: int | None = None, autoscale_max_replicas: int | None = None,
              autoscale_target_utilization: int | None = None) -> None:
        """Set a fixed replica count, or autoscale bounds, without a rollout (``aml_scale``).
        The stored deployment configuration follows, so a later ``update()`` keeps the scale."""
        from aml_core.records import ScaleRequest

        request = ScaleRequest(num_replicas=num_replicas, autoscale_enabled=autoscale_enabled,
                               autoscale_min_replicas=autoscale_min_replicas,
                               autoscale_max_replicas=autoscale_max_replicas,
                               autoscale_target_utilization=autoscale_target_utilization)
        self._require_usable("scale")
        hooks = default_hooks()
        # capabilities first: a target without scale says so before anything else
        hooks.require(self._record.kind, "scale")
        loaded = _load_row(self.workspace, self.name)
        spec_data = loaded[1] if loaded else None
        config = None
        if spec_data and spec_data.get("deployment_config"):
            spec = _spec_from_dict(self.workspace, hooks, self.name, spec_data)
            with_scale = getattr(spec.deployment_config, "with_scale", None)
            if with_scale is not None:
                # validated here, before the target is touched
                config = with_scale(request, self._record.details.get("replicas"))
        _begin_operation(self.workspace, self.name, "scale")
        try:
            record = hooks.scale(workspace=self.workspace, service=self._record, request=request,
                                 deployment_config=config)
        except BaseException:
            _release(self.workspace, self.name)
            raise
        _store(self.workspace, record, {**spec_data, "deployment_config": config.to_dict()} if config else None)
        self._record = record

    def _provider_operation(self, label: str, work: Callable[[ServiceRecord, Callable[[str], None]], ServiceRecord],
                            *, wait: bool = True, show_output: bool = False) -> None:
        """Run a target-specific change (``AksEndpoint.create_version``, ...) like ``update()``:
        under the service's operation lock, in the background, its progress shown by
        ``wait_for_deployment``. ``work(current record, progress)`` returns the new record,
        which is stored; on failure the stored record is left as it was."""
        self._require_usable(label)
        current = _begin_operation(self.workspace, self.name, label)
        if current is None:
            _release(self.workspace, self.name)
            raise WebserviceNotFound(f"Service {self.name!r} has been deleted.")

        def run(progress: Callable[[str], None]) -> ServiceRecord:
            try:
                record = work(current, progress)
            except BaseException:
                _release(self.workspace, self.name)
                raise
            _store(self.workspace, record)
            return record

        self._operation = Operation(f"{label}-{self.name}", run).start()
        if wait or show_output:
            self.wait_for_deployment(show_output=show_output)

    def delete(self) -> None:
        """Stop the service and forget it. Deleting a service that is gone only says so."""
        if self._operation is not None and self._operation.running:
            self.wait_for_deployment()
        hooks = default_hooks()
        try:
            record = _begin_operation(self.workspace, self.name, "delete")
        except Conflict:
            raise
        if record is None:
            print(f"No service with name {self.name} found to delete.")
            return
        try:
            hooks.delete(workspace=self.workspace, service=record)
        except BaseException:
            _release(self.workspace, self.name)
            raise
        with self.workspace.transaction() as db:
            db.execute("DELETE FROM services WHERE name = ?", (self.name,))
        self._record = attrs.evolve(record, state="Deleted", scoring_uri=None, updated_time=utcnow())

    # -- auth --------------------------------------------------------------------------

    def get_keys(self) -> tuple[str, str]:
        result = default_hooks().auth(workspace=self.workspace, service=self._reload(), request=AuthRequest(action="get_keys"))
        return result.primary_key, result.secondary_key

    def regen_key(self, key: str, set_key: str | None = None) -> None:
        if not isinstance(key, str) or key.lower() not in ("primary", "secondary"):
            raise InvalidConfig(f"Invalid key type {key!r}. Valid options are: Primary, Secondary")
        default_hooks().auth(
            workspace=self.workspace,
            service=self._reload(),
            request=AuthRequest(action="regen_key", key_type=key.capitalize(), set_key=set_key),
        )
        self._key = None

    def get_token(self) -> tuple[str, float]:
        result = default_hooks().auth(workspace=self.workspace, service=self._reload(), request=AuthRequest(action="get_token"))
        return result.token, result.refresh_after

    def get_access_token(self) -> "AccessToken":
        result = default_hooks().auth(workspace=self.workspace, service=self._reload(), request=AuthRequest(action="get_token"))
        return AccessToken(access_token=result.token, refresh_after=result.refresh_after, expiry_on=result.expiry_on)

    # -- finding -----------------------------------------------------------------------

    @staticmethod
    def list(workspace: Workspace, compute_type: str | None = None, model_name: str | None = None,
             tags: Any = None, properties: Any = None, **_: Any) -> list["Webservice"]:
        from aml_core.model import _matches

        with workspace.reading() as db:
            rows = db.execute("SELECT record FROM services ORDER BY name").fetchall()
        services = []
        for row in rows:
            record = service_from_dict(json.loads(row["record"]))
            if compute_type and record.kind.lower() != compute_type.lower():
                continue
            if model_name and not any(m.split(":")[0] == model_name for m in record.models):
                continue
            if not (_matches(record.tags, tags) and _matches(record.properties, properties)):
                continue
            services.append(Webservice._handle(workspace, record))
        return services

    @staticmethod
    def deploy_from_model(workspace: Workspace, name: str, models: Iterable[Any], image_config: Any,
                          deployment_config: Any = None, deployment_target: Any = None,
                          overwrite: bool = False) -> "Webservice":
        """azureml-core's legacy deployment from an image configuration
        (``ContainerImage.image_configuration(...)``): ``Model.deploy`` with the inference
        configuration it describes."""
        to_inference = getattr(image_config, "inference_config", None)
        if to_inference is None:
            raise InvalidConfig(f"image_config must come from ContainerImage.image_configuration(...), got "
                                f"{type(image_config).__name__}.")
        return deploy(workspace, name, models, to_inference(), deployment_config, deployment_target,
                      overwrite=overwrite)

    @staticmethod
    def check_for_existing_webservice(workspace: Workspace, name: str, overwrite: bool = False) -> None:
        if _load_row(workspace, name) is not None and not overwrite:
            raise Conflict(
                f"Service {name!r} already exists. Choose another name, delete it first, or pass overwrite=True."
            )


@attrs.frozen
class AccessToken:
    access_token: str = attrs.field(repr=False)
    refresh_after: float | None
    expiry_on: float | None
    token_type: str = "Bearer"


def _progress_printer():
    from rich.console import Console

    # soft_wrap: a line longer than the terminal (or than 80 columns when not on one) stays
    # one line, so paths and URLs are never split
    console = Console(highlight=False, soft_wrap=True)

    def show(stamp: float, text: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S', time.localtime(stamp))}[/dim] {text}")

    return show


@attrs.frozen(kw_only=True)
class PackagedImage:
    """What ``deploy_from_image`` hands the provider in place of an inference config: the
    stored image, packaged for ``target_kind``."""

    record: ImageRecord

    @property
    def target_kind(self) -> str:
        return self.record.details["target_kind"]

    def to_dict(self) -> dict[str, Any]:
        return {"image": f"{self.record.name}:{self.record.version}", "target_kind": self.target_kind}


# -- Model.deploy --------------------------------------------------------------------------


def deploy(workspace: Workspace, name: str, models: Iterable[Any], inference_config: InferenceConfig | None,
           deployment_config: Any, deployment_target: Any = None, *, overwrite: bool = False,
           show_output: bool = False) -> Webservice:
    validate_service_name(name)
    if inference_config is None:
        raise InvalidConfig(
            "Model.deploy needs an InferenceConfig (entry script + environment); no-code deployment is not supported."
        )
    if deployment_config is None:
        raise InvalidConfig(
            "Model.deploy needs a deployment_config, for example LocalWebservice.deploy_configuration(port=6789)."
        )
    kind = getattr(deployment_config, "kind", None)
    if not kind:
        raise InvalidConfig(f"{type(deployment_config).__name__} is not a deployment configuration (it has no kind).")
    # a target's own image (configuration) is deployed by that target's provider, onto the
    # compute the deployment configuration describes (e.g. an FPGA image on AKS)
    kind = getattr(inference_config, "target_kind", None) or kind
    hooks = default_hooks()
    hooks.require(kind, "deploy")
    records = tuple(model_record(m) for m in models)
    if not records:
        raise InvalidConfig("Model.deploy needs at least one model.")
    if isinstance(inference_config, InferenceConfig):
        inference_config.validate_entry_script()
    elif getattr(inference_config, "target_kind", None) is None:
        raise InvalidConfig(f"Model.deploy needs an InferenceConfig (entry script + environment), got "
                            f"{type(inference_config).__name__}.")
    target_name = getattr(deployment_target, "name", deployment_target)
    spec = DeploymentSpec(
        name=name,
        kind=kind,
        models=records,
        inference_config=inference_config,
        deployment_config=deployment_config,
        compute_target=target_name,
        overwrite=overwrite,
    )
    return _start_deployment(workspace, spec, hooks, show_output=show_output)


def _image_record(image: Any) -> Any:
    """An :class:`~aml_core.images.Image` (or its record) → its ImageRecord."""
    from aml_core.records import ImageRecord

    record = getattr(image, "record", image)
    if not isinstance(record, ImageRecord):
        raise InvalidConfig(f"image must be an Image (Model.package / ContainerImage.create / Image(ws, name)), "
                            f"got {type(image).__name__}.")
    return record


def _image_models(workspace: Workspace, record: Any) -> tuple:
    from aml_core import registry

    models = []
    for model_id in record.details.get("models") or []:
        model_name, _, version = model_id.partition(":")
        models.append(registry.get_model(workspace, model_name, int(version)))
    return tuple(models)


def deploy_from_image(workspace: Workspace, name: str, image: Any, deployment_config: Any,
                      deployment_target: Any = None, *, overwrite: bool = False,
                      show_output: bool = False) -> Webservice:
    """Deploy an image already packaged (``Model.package``, ``ContainerImage.create``) as
    the service ``name``, on the target of ``deployment_config``, whatever provider serves it.

    The image runs as it is: its models, entry script and environment are the ones it was
    built with. The service is then updated with ``update(image=...)``.
    """
    validate_service_name(name)
    record = _image_record(image)
    if deployment_config is None:
        raise InvalidConfig("deploy_from_image needs a deployment_config, for example "
                            "AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=1).")
    if record.details.get("target_kind"):
        # an image packaged for one target (an AccelContainerImage for FPGA) is deployed by
        # that target's provider, onto the compute the deployment configuration describes
        return deploy(workspace, name, _image_models(workspace, record), PackagedImage(record=record),
                      deployment_config, deployment_target, overwrite=overwrite, show_output=show_output)
    kind = getattr(deployment_config, "kind", None)
    if not kind:
        raise InvalidConfig(f"{type(deployment_config).__name__} is not a deployment configuration (it has no kind).")
    hooks = default_hooks()
    hooks.require(kind, "deploy")
    if not record.location or record.details.get("state") != "Succeeded":
        raise InvalidConfig(f"Image {record.name}:{record.version} is {record.details.get('state', 'not built')}, "
                            f"not a built image; package it again (Model.package without generate_dockerfile).")
    spec = DeploymentSpec(
        name=name,
        kind=kind,
        models=_image_models(workspace, record),
        inference_config=None,
        deployment_config=deployment_config,
        compute_target=getattr(deployment_target, "name", deployment_target),
        overwrite=overwrite,
        image=record,
    )
    return _start_deployment(workspace, spec, hooks, show_output=show_output)


def _start_deployment(workspace: Workspace, spec: DeploymentSpec, hooks: Hooks, *, show_output: bool) -> Webservice:
    """Create (or, with ``overwrite``, replace) the service of ``spec`` in the background."""
    name, kind, overwrite = spec.name, spec.kind, spec.overwrite
    placeholder = ServiceRecord(name=name, kind=kind, state="Transitioning", models=tuple(m.id for m in spec.models))
    existing = _begin_operation(workspace, name, "deploy", create=placeholder)
    if existing is not None and not overwrite:
        _release(workspace, name)
        raise Conflict(
            f"Service {name!r} already exists in workspace {workspace.name!r}. Pass overwrite=True to replace it, "
            f"or choose another name."
        )

    def work(progress: Callable[[str], None]) -> ServiceRecord:
        live = attrs.evolve(spec, progress=progress)
        # whether the target holds nothing of an earlier service of this name (a new one, or
        # the old one deleted): then a failure stores this deployment's own failed record
        fresh = existing is None
        try:
            if existing is None:
                progress(f"Creating service {name!r} on target {kind!r}")
                record = hooks.deploy(workspace=workspace, spec=live)
            elif existing.kind == kind and existing.state not in FAILED_STATES:
                progress(f"Service {name!r} exists; updating it in place (overwrite=True)")
                record = hooks.update(workspace=workspace, service=existing, spec=live)
            else:
                # a failed service has nothing worth updating in place: clean up what it left
                why = "failed" if existing.state in FAILED_STATES else f"is on target {existing.kind!r}"
                progress(f"Service {name!r} exists and {why}; deleting it first")
                hooks.delete(workspace=workspace, service=existing)
                fresh = True
                record = hooks.deploy(workspace=workspace, spec=live)
        except BaseException as exc:
            if fresh:
                failed = getattr(exc, "record", None)
                if not isinstance(failed, ServiceRecord):
                    failed = attrs.evolve(placeholder, state="Failed", error=str(exc))
                _store(workspace, failed, _spec_to_dict(spec))
            else:
                _release(workspace, name)
            raise
        _store(workspace, record, _spec_to_dict(spec))
        return record

    operation = Operation(f"deploy-{name}", work).start()
    service = Webservice._handle(workspace, existing or placeholder, operation)
    if show_output:
        service.wait_for_deployment(show_output=True)
    return service
