"""Long-running ARM operations, answered as Azure does, and scripted by tests.

A resource provider that starts something slow (create a cluster, run a container group,
delete one) calls :meth:`OperationTracker.begin` and answers the client with
:meth:`OperationTracker.accepted`: ``201``/``202`` plus the ``Azure-AsyncOperation`` and
``Location`` headers and ``Retry-After``, which is what azure-core's ``ARMPolling`` follows.
Two URLs per operation, under the provider's namespace::

    GET /subscriptions/{sub}/providers/{Namespace}/locations/{loc}/operations/{id}
        -> 200 {"id", "name", "status": InProgress|Succeeded|Failed|Canceled, "startTime",
                "endTime"?, "error"?: {"code", "message"}}
    GET /subscriptions/{sub}/providers/{Namespace}/locations/{loc}/operationResults/{id}
        -> 202 while running; then 200 with the resource (or 204) on success, or the error

(:func:`register_status_routes` adds both to a :class:`~aml_emulator.arm.router.ResourceProvider`.)

When an operation finishes is decided by two things together:

- its **work**: a ``() -> WorkStatus`` the provider passes (the container group's containers
  are running, or the image pull failed); ``None`` means there is nothing to wait for;
- its **script** (:class:`OperationScript`), set by a test through
  :meth:`aml_emulator.Emulator.script_arm_operations` or
  :meth:`aml_emulator.arm.ArmService.script_operations`: finish at once (the default), only
  after N status polls, only after T seconds of the injectable clock, or fail with a given ARM
  error code and message instead of doing the work's outcome.

Example (a test that wants a slow, then failing, container group)::

    emu.script_arm_operations("Microsoft.ContainerInstance/containerGroups",
                              OperationScript.after_polls(3))
    emu.script_arm_operations("Microsoft.ContainerInstance/containerGroups",
                              OperationScript.failing("InternalServerError", "The node failed."),
                              operation="create", name="svc2")

Operations live in memory: after an emulator restart, resources come back from the state
directory in their last terminal state, and a client still polling gets ``NotFound`` for the
operation (as it would after Azure expired it).
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
import uuid
from typing import Any, Callable

import attrs

from aml_emulator.arm import exceptions
from aml_emulator.arm.router import ITEM, ArmRequest, ArmResponse, ResourceProvider

#: operation names a script may name (``None`` in a script matches any of them); actions
#: such as ``restart`` or ``start`` use the action's own name
CREATE = "create"
UPDATE = "update"
DELETE = "delete"

IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CANCELED = "Canceled"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED})


def _iso(moment: _dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


@attrs.frozen
class WorkStatus:
    """What a provider's work reports: still going, done, or failed with an ARM error."""

    done: bool
    error: exceptions.ArmError | None = None

    @classmethod
    def pending(cls) -> "WorkStatus":
        return cls(done=False)

    @classmethod
    def finished(cls) -> "WorkStatus":
        return cls(done=True)

    @classmethod
    def failed(cls, error: exceptions.ArmError) -> "WorkStatus":
        return cls(done=True, error=error)


@attrs.frozen(kw_only=True)
class OperationScript:
    """How the matching operations proceed. Build one with the named constructors.

    Both conditions must hold before an operation finishes: ``polls`` status polls have been
    answered ``InProgress`` and ``seconds`` have passed on the service's clock since it began.
    With ``error_code`` set the operation then fails with that ARM error (the resource's
    ``provisioningState`` becomes ``Failed``); otherwise it ends as its work ends.
    """

    polls: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    seconds: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    error_code: str | None = None
    error_message: str = ""
    #: HTTP status of the error where one is answered directly (the ``operationResults`` URL)
    error_status: int = 400

    @classmethod
    def immediate(cls) -> "OperationScript":
        """Finish as soon as the work is done (what happens without any script)."""
        return cls()

    @classmethod
    def after_polls(cls, polls: int) -> "OperationScript":
        """Answer ``InProgress`` to the first ``polls`` status polls, then finish."""
        return cls(polls=polls)

    @classmethod
    def after_seconds(cls, seconds: float) -> "OperationScript":
        """Stay ``InProgress`` until ``seconds`` have passed on the service's clock."""
        return cls(seconds=seconds)

    @classmethod
    def failing(cls, code: str, message: str, *, polls: int = 0, seconds: float = 0.0,
                status: int = 400) -> "OperationScript":
        """Fail with ARM error ``code``/``message`` (after ``polls`` polls and ``seconds``)."""
        if not code:
            raise ValueError("a failing script needs an ARM error code, e.g. 'InternalServerError'")
        return cls(polls=polls, seconds=seconds, error_code=code, error_message=message or code,
                   error_status=status)


@attrs.frozen
class _ScriptKey:
    resource_type: str
    operation: str | None
    name: str | None


@attrs.define(eq=False)
class LongRunningOperation:
    """One operation in flight or finished (``status`` is the ARM status string)."""

    id: str
    namespace: str
    location: str
    subscription_id: str
    #: e.g. ``Microsoft.ContainerInstance/containerGroups``
    resource_type: str
    #: the resource's ARM id (``/subscriptions/.../{name}``)
    resource_id: str
    operation: str
    script: OperationScript
    started: float
    started_at: _dt.datetime
    work: Callable[[], WorkStatus] | None = attrs.field(default=None, repr=False)
    #: called once when the operation ends, with ``None`` or the error it failed with
    on_finish: Callable[[exceptions.ArmError | None], None] | None = attrs.field(default=None, repr=False)
    #: the body the ``operationResults`` URL answers on success (``None``: 204)
    result: Callable[[], Any] | None = attrs.field(default=None, repr=False)
    polls: int = 0
    status: str = IN_PROGRESS
    error: exceptions.ArmError | None = None
    ended_at: _dt.datetime | None = None

    def document(self) -> dict[str, Any]:
        """The operation-status resource (``Azure-AsyncOperation`` body)."""
        doc: dict[str, Any] = {
            "id": f"/subscriptions/{self.subscription_id}/providers/{self.namespace}/locations/"
                  f"{self.location}/operations/{self.id}",
            "name": self.id, "status": self.status, "startTime": _iso(self.started_at),
        }
        if self.ended_at is not None:
            doc["endTime"] = _iso(self.ended_at)
        if self.error is not None:
            doc["error"] = {"code": self.error.code, "message": self.error.message}
        return doc


class OperationTracker:
    """Every long-running operation of one ARM service, and the scripts tests set.

    :param clock: seconds clock for ``after_seconds`` scripts (``time.monotonic`` by default;
        tests pass one they advance by hand).
    :param retry_after: seconds a client should wait between polls. A whole number goes out
        as ``Retry-After`` (the generated SDK models parse that header as an integer); a
        fraction as ``retry-after-ms``, which azure-core honours the same way. It must not
        be 0: azure-core reads 0 as "absent" and waits its 30 s default.
    """

    def __init__(self, clock: Callable[[], float] | None = None, retry_after: float = 1.0) -> None:
        if retry_after <= 0:
            raise ValueError("retry_after must be > 0 (azure-core reads 0 as 'no Retry-After' and waits 30 s)")
        self.clock = clock or time.monotonic
        self.retry_after = retry_after
        self._operations: dict[str, LongRunningOperation] = {}
        #: the latest operation per resource id (lower-case), so a GET can settle it
        self._by_resource: dict[str, LongRunningOperation] = {}
        self._scripts: dict[_ScriptKey, OperationScript] = {}
        self._lock = threading.RLock()

    # -- scripting ------------------------------------------------------------------------

    def script(self, resource_type: str, script: OperationScript, *, operation: str | None = None,
               name: str | None = None) -> None:
        """Make the matching operations proceed as ``script`` says, until :meth:`clear_scripts`.

        :param resource_type: ``Namespace/type``, e.g. ``Microsoft.ContainerInstance/containerGroups``.
        :param operation: ``create``, ``update``, ``delete`` or an action (``restart``,
            ``start``); ``None``: every operation on the type.
        :param name: one resource's name; ``None``: every resource of the type. The most
            specific script wins (name and operation, then name, then operation, then type).
        """
        if "/" not in resource_type:
            raise ValueError(f"resource_type {resource_type!r} must be 'Namespace/type', "
                             f"e.g. 'Microsoft.ContainerInstance/containerGroups'")
        key = _ScriptKey(resource_type.lower(), operation.lower() if operation else None,
                         name.lower() if name else None)
        with self._lock:
            self._scripts[key] = script

    def clear_scripts(self) -> None:
        with self._lock:
            self._scripts.clear()

    def _script_for(self, resource_type: str, operation: str, name: str) -> OperationScript:
        type_key, op, nm = resource_type.lower(), operation.lower(), name.lower()
        with self._lock:
            for key in (_ScriptKey(type_key, op, nm), _ScriptKey(type_key, None, nm),
                        _ScriptKey(type_key, op, None), _ScriptKey(type_key, None, None)):
                if key in self._scripts:
                    return self._scripts[key]
        return OperationScript.immediate()

    # -- operations -----------------------------------------------------------------------

    def begin(self, request: ArmRequest, *, resource_type: str, resource_id: str, location: str,
              operation: str, work: Callable[[], WorkStatus] | None = None,
              on_finish: Callable[[exceptions.ArmError | None], None] | None = None,
              result: Callable[[], Any] | None = None) -> LongRunningOperation:
        """Start tracking an operation on ``resource_id``. It is ``InProgress`` until a status
        poll or a read of the resource settles it. The caller answers with :meth:`accepted`."""
        namespace = resource_type.split("/", 1)[0]
        name = resource_id.rsplit("/", 1)[-1]
        op = LongRunningOperation(
            id=str(uuid.uuid4()), namespace=namespace, location=location.replace(" ", "").lower() or "westus",
            subscription_id=request.path.subscription_id, resource_type=resource_type,
            resource_id=resource_id, operation=operation,
            script=self._script_for(resource_type, operation, name),
            started=self.clock(), started_at=_utcnow(), work=work, on_finish=on_finish, result=result,
        )
        with self._lock:
            previous = self._by_resource.get(resource_id.lower())
            if previous is not None and previous.status == IN_PROGRESS:
                # a new PUT/DELETE supersedes the one in flight, as in ARM
                self._finish(previous, CANCELED, exceptions.ArmError(
                    409, "OperationCanceled", f"The operation was canceled by a later {operation} "
                                              f"of '{name}'."), notify=False)
            self._operations[op.id] = op
            self._by_resource[resource_id.lower()] = op
        return op

    def accepted(self, request: ArmRequest, op: LongRunningOperation, payload: Any, *,
                 status: int) -> ArmResponse:
        """The first answer of a long-running operation: ``status`` (201/202/200/204) with
        the polling headers, whatever state the operation is in now."""
        base = f"{request.base_url}/subscriptions/{op.subscription_id}/providers/{op.namespace}/locations/{op.location}"
        query = f"?api-version={request.api_version}"
        headers = {
            "Azure-AsyncOperation": f"{base}/operations/{op.id}{query}",
            "Location": f"{base}/operationResults/{op.id}{query}",
            **self._retry_after_headers(),
        }
        return ArmResponse(payload, status=status, headers=headers)

    def _retry_after_headers(self) -> dict[str, str]:
        if float(self.retry_after).is_integer():
            return {"Retry-After": str(int(self.retry_after))}
        return {"retry-after-ms": str(max(1, round(self.retry_after * 1000)))}

    def settle_resource(self, resource_id: str) -> LongRunningOperation | None:
        """Advance the latest operation on a resource by the clock and its work (not by
        polls: reading a resource is not polling its operation). Call before answering a GET."""
        with self._lock:
            op = self._by_resource.get(resource_id.lower())
        if op is not None:
            self._settle(op, counted_poll=False)
        return op

    def get(self, operation_id: str) -> LongRunningOperation | None:
        with self._lock:
            return self._operations.get(operation_id)

    def poll(self, operation_id: str) -> LongRunningOperation:
        """One status poll: counts towards ``after_polls`` scripts, then settles."""
        op = self.get(operation_id)
        if op is None:
            raise exceptions.ArmError(404, "NotFound", f"The operation '{operation_id[:64]}' could not be found.")
        self._settle(op, counted_poll=True)
        return op

    def _settle(self, op: LongRunningOperation, *, counted_poll: bool) -> None:
        with self._lock:
            if op.status != IN_PROGRESS:
                return
            script = op.script
            if counted_poll:
                op.polls += 1
            # the poll being answered now counts: after_polls(2) answers InProgress twice
            polls_seen = op.polls - 1 if counted_poll else op.polls
            if polls_seen < script.polls or self.clock() - op.started < script.seconds:
                return
            if script.error_code is not None:
                self._finish(op, FAILED, exceptions.ArmError(script.error_status, script.error_code,
                                                             script.error_message))
                return
            work = op.work() if op.work is not None else WorkStatus.finished()
            if not work.done:
                return
            self._finish(op, FAILED if work.error else SUCCEEDED, work.error)

    def _finish(self, op: LongRunningOperation, status: str, error: exceptions.ArmError | None,
                *, notify: bool = True) -> None:
        op.status, op.error, op.ended_at = status, error, _utcnow()
        if notify and op.on_finish is not None:
            op.on_finish(error)

    def reset(self) -> None:
        """Forget every operation and script."""
        with self._lock:
            self._operations.clear()
            self._by_resource.clear()
            self._scripts.clear()

    # -- the two status URLs --------------------------------------------------------------

    def status_document(self, request: ArmRequest) -> ArmResponse:
        op = self.poll(request.path.name or "")
        headers = self._retry_after_headers() if op.status == IN_PROGRESS else {}
        return ArmResponse(op.document(), status=200, headers=headers)

    def operation_result(self, request: ArmRequest) -> ArmResponse:
        op = self.poll(request.path.name or "")
        if op.status == IN_PROGRESS:
            location = f"{request.base_url}{_path_of(request)}?api-version={request.api_version}"
            return ArmResponse(None, status=202, headers={"Location": location, **self._retry_after_headers()})
        if op.error is not None:
            raise op.error
        payload = op.result() if op.result is not None else None
        return ArmResponse(payload, status=204 if payload is None else 200)


def _path_of(request: ArmRequest) -> str:
    path = request.path
    return (f"/subscriptions/{path.subscription_id}/providers/{path.namespace}/"
            f"{'/'.join(f'{t}/{n}' for t, n in zip(path.resource_type.split('/'), path.names))}")


def register_status_routes(provider: ResourceProvider, summary: str) -> None:
    """Serve the ``operations`` and ``operationResults`` URLs of ``provider``'s namespace.

    :param summary: the SDK calls whose polling these answer (for the support matrix).
    """

    @provider.operation("GET", "locations/operations", ITEM, summary=summary)
    async def operation_status(request: ArmRequest) -> ArmResponse:
        return request.backend.operations.status_document(request)

    @provider.operation("GET", "locations/operationResults", ITEM, summary=summary)
    async def operation_result(request: ArmRequest) -> ArmResponse:
        return request.backend.operations.operation_result(request)
