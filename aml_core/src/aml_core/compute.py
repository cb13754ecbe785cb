"""Compute targets: provision or attach a cluster (or device, or plan) and find it again.

``ComputeTarget.create(ws, name, provisioning_configuration)`` and
``ComputeTarget.attach(ws, name, attach_configuration)`` store a row in the workspace's
``computes`` table, then run the target provider's ``aml_provision`` hook in a background
thread and return at once with ``provisioning_state == "Creating"``;
``wait_for_completion(show_output=True)`` blocks (and raises
:class:`~aml_core.errors.ProvisioningFailed` with the provider's errors when it failed).
``ComputeTarget(ws, name)`` and ``ComputeTarget.list(ws)`` read the table, from any process.
``detach()`` and ``delete()`` go through the ``aml_compute_delete`` hook.

A configuration names its target kind in ``config.kind`` (``"aks"``) and may name the
handle class ``ComputeTarget(ws, name)`` returns in ``config.compute_class``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import attrs

from aml_core.errors import Conflict, DeploymentTimeout, InvalidConfig, NotFound, ProvisioningFailed
from aml_core.plugins import default_hooks
from aml_core.records import ComputeRecord, ProvisionRequest
from aml_core.serialization import to_json
from aml_core.workspace import Workspace

COMPUTE_NAME_RULE = (
    "a compute name is 2-16 characters of letters, digits and dashes, starting with a letter"
)
_COMPUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,15}$")
FINAL_STATES = {"Succeeded", "Failed", "Canceled"}


class ComputeTargetException(NotFound):
    """No compute target of that name exists in the workspace."""


def validate_compute_name(name: object) -> str:
    if not isinstance(name, str) or not _COMPUTE_NAME.match(name):
        raise InvalidConfig(f"Invalid compute name {name!r}: {COMPUTE_NAME_RULE}.")
    return name


def _record_from_json(text: str) -> ComputeRecord:
    data = json.loads(text)
    names = {a.name for a in attrs.fields(ComputeRecord)}
    fields = {k: v for k, v in data.items() if k in names}
    fields["provisioning_errors"] = tuple(fields.get("provisioning_errors") or ())
    return ComputeRecord(**fields)


def load_compute(workspace: Workspace, name: str) -> ComputeRecord | None:
    with workspace.reading() as db:
        row = db.execute("SELECT record FROM computes WHERE name = ?", (name,)).fetchone()
    return None if row is None else _record_from_json(row["record"])


def list_computes(workspace: Workspace) -> list[ComputeRecord]:
    with workspace.reading() as db:
        rows = db.execute("SELECT record FROM computes ORDER BY name").fetchall()
    return [_record_from_json(r["record"]) for r in rows]


def _store(workspace: Workspace, record: ComputeRecord) -> None:
    with workspace.transaction() as db:
        db.execute("INSERT OR REPLACE INTO computes (name, kind, record) VALUES (?, ?, ?)",
                   (record.name, record.kind, to_json(record)))


class ComputeTarget:
    """A provisioned or attached compute target. ``ComputeTarget(ws, name)`` finds one."""

    def __init__(self, workspace: Workspace, name: str) -> None:
        record = load_compute(workspace, name)
        if record is None:
            raise ComputeTargetException(
                f"ComputeTargetNotFound: there is no compute target named {name!r} in workspace "
                f"{workspace.name!r}. Create one with ComputeTarget.create(ws, {name!r}, config) or attach one."
            )
        self._bind(workspace, record)

    def _bind(self, workspace: Workspace, record: ComputeRecord, thread: threading.Thread | None = None) -> None:
        self.workspace = workspace
        self._record = record
        self._thread = thread
        self._error: BaseException | None = None

    @classmethod
    def _handle(cls, workspace: Workspace, record: ComputeRecord) -> "ComputeTarget":
        obj = object.__new__(cls)
        obj._bind(workspace, record)
        return obj

    name = property(lambda self: self._record.name)
    type = property(lambda self: self._record.kind)
    provisioning_state = property(lambda self: self._record.provisioning_state)
    provisioning_errors = property(lambda self: list(self._record.provisioning_errors))
    record = property(lambda self: self._record)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(workspace={self.workspace.name!r}, name={self.name!r}, "
                f"type={self.type!r}, provisioning_state={self.provisioning_state!r})")

    # -- creating ----------------------------------------------------------------------

    @classmethod
    def create(cls, workspace: Workspace, name: str, provisioning_configuration: Any) -> "ComputeTarget":
        """Provision new compute; returns at once (``wait_for_completion`` blocks)."""
        return cls._start(workspace, name, provisioning_configuration, attach=False)

    @classmethod
    def attach(cls, workspace: Workspace, name: str, attach_configuration: Any) -> "ComputeTarget":
        """Attach existing compute; returns at once (``wait_for_completion`` blocks)."""
        return cls._start(workspace, name, attach_configuration, attach=True)

    @classmethod
    def _start(cls, workspace: Workspace, name: str, config: Any, *, attach: bool) -> "ComputeTarget":
        validate_compute_name(name)
        kind = getattr(config, "kind", None)
        if not kind:
            raise InvalidConfig(f"{type(config).__name__} is not a provisioning or attach configuration (it has no kind).")
        hooks = default_hooks()
        hooks.require(kind, "provision")
        placeholder = ComputeRecord(name=name, kind=kind, provisioning_state="Creating",
                                    details={"attached": attach})
        with workspace.transaction() as db:
            if db.execute("SELECT 1 FROM computes WHERE name = ?", (name,)).fetchone() is not None:
                raise Conflict(f"A compute target named {name!r} already exists in workspace {workspace.name!r}. "
                               f"Choose another name, or detach/delete it first.")
            db.execute("INSERT INTO computes (name, kind, record) VALUES (?, ?, ?)", (name, kind, to_json(placeholder)))
        request = ProvisionRequest(kind=kind, name=name, config=config, attach=attach)
        handle_cls = getattr(config, "compute_class", None) or cls
        target = object.__new__(handle_cls)

        def work() -> None:
            try:
                record = hooks.provision(workspace=workspace, request=request)
            except BaseException as exc:  # reported by wait_for_completion
                target._error = exc
                record = attrs.evolve(placeholder, provisioning_state="Failed", provisioning_errors=(str(exc),))
                if isinstance(exc, Conflict):  # nothing was made: forget the name again
                    with workspace.transaction() as db:
                        db.execute("DELETE FROM computes WHERE name = ?", (name,))
                    target._record = record
                    return
            _store(workspace, record)
            target._record = record

        thread = threading.Thread(target=work, name=f"aml-provision-{name}", daemon=False)
        target._bind(workspace, placeholder, thread)
        thread.start()
        return target

    def wait_for_completion(self, show_output: bool = False, timeout_sec: float | None = None) -> None:
        """Block until provisioning ends; raise ProvisioningFailed with its errors if it failed."""
        started = time.monotonic()
        if self._thread is not None:
            self._thread.join(timeout_sec)
            if self._thread.is_alive():
                raise DeploymentTimeout(f"Compute {self.name!r} is still {self.provisioning_state} after {timeout_sec} s.")
            self._thread = None
        else:
            while self.refresh_state() not in FINAL_STATES:
                if timeout_sec is not None and time.monotonic() - started > timeout_sec:
                    raise DeploymentTimeout(f"Compute {self.name!r} is still {self.provisioning_state} after {timeout_sec} s.")
                time.sleep(0.2)
        if show_output:
            print(f"Compute {self.name!r} ({self.type}): {self.provisioning_state} "
                  f"(waited {time.monotonic() - started:.0f} s)")
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self.provisioning_state == "Failed":
            raise ProvisioningFailed(f"Provisioning compute {self.name!r} failed: {'; '.join(self.provisioning_errors)}")

    def refresh_state(self) -> str:
        record = load_compute(self.workspace, self.name)
        if record is not None:
            self._record = record
        return self._record.provisioning_state

    # -- releasing ---------------------------------------------------------------------

    def detach(self) -> None:
        """Forget the compute; the cluster itself keeps running."""
        self._release(detach=True)

    def delete(self) -> None:
        """Delete the provisioned compute in the cloud (or emulator) and forget it."""
        self._release(detach=False)

    def _release(self, *, detach: bool) -> None:
        if self._thread is not None:
            self.wait_for_completion()
        record = load_compute(self.workspace, self.name)
        if record is None:
            return
        default_hooks().compute_delete(workspace=self.workspace, compute=record, detach=detach)
        with self.workspace.transaction() as db:
            db.execute("DELETE FROM computes WHERE name = ?", (self.name,))
        self._record = attrs.evolve(record, provisioning_state="Deleted" if not detach else "Detached")

    # -- finding -----------------------------------------------------------------------

    @staticmethod
    def list(workspace: Workspace) -> list["ComputeTarget"]:
        return [ComputeTarget._handle(workspace, r) for r in list_computes(workspace)]
