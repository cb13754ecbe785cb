"""Running a local service as a process group: stage, start, reload, stop.

Each service has a folder in the workspace (``services/local/<name>/``) holding one
``gen-<n>`` folder per deployed generation (the app's files and its models laid out as
``azureml-models/NAME/VERSION``), ``spec.json`` (what the runtime's supervisor serves),
``state.json`` (written by the supervisor) and ``service.log``.

The supervisor (``python -m aml_core.runtime serve``) owns the listening socket; an update
writes a new generation and sends it SIGHUP, and the supervisor swaps worker generations
on the same socket without dropping a connection. If the new generation's ``init()``
fails, the old one keeps serving and nothing is lost.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import attrs
from packaging.requirements import Requirement

from aml_core.errors import Conflict, InvalidConfig, NotSupported, ProvisioningFailed
from aml_core.model import model_dir_layout
from aml_core.records import DeploymentSpec, ServiceRecord, utcnow
from aml_core.workspace import Workspace

from aml_provider_local import container

KIND = "local"
LOG_NAME = "service.log"
MAX_LOG_BYTES = 10 * 1024 * 1024
_POLL = 0.05


def _noop(_: str) -> None:
    pass


# -- processes ----------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (guards against a recycled pid), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        try:  # our own child that has exited: reap it
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return None
    return int(fields[19])


def process_running(details: dict[str, Any]) -> bool:
    pid = details.get("pid")
    return bool(pid) and _start_time(pid) is not None and _start_time(pid) == details.get("pid_start")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def tail(path: Path, num_lines: int) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        block = 64 * 1024
        data = b""
        while end > 0 and data.count(b"\n") <= num_lines:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-num_lines:]) + ("\n" if lines else "")


# -- environments -------------------------------------------------------------------------


def unmet_requirements(requirements: list[str]) -> list[str]:
    """The requirements this interpreter does not satisfy."""
    missing = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(f"{text} (installed: {version})")
    return missing


def check_environment(spec: DeploymentSpec) -> None:
    env = spec.inference_config.environment
    if env.python.user_managed_dependencies:
        return
    missing = unmet_requirements(env.python.conda_dependencies.pip_requirements())
    if missing:
        raise InvalidConfig(
            f"Environment {env.name!r} needs packages this Python ({sys.executable}) lacks: {', '.join(missing)}. "
            f"The process engine runs the service with this interpreter: install them with "
            f"`{sys.executable} -m pip install {' '.join(Requirement(m.split(' (')[0]).name for m in missing)}`."
        )


# -- staging ------------------------------------------------------------------------------


def _stage(workspace: Workspace, spec: DeploymentSpec, service_dir: Path, revision: int) -> dict[str, Any]:
    """Copy the app and lay out the models for one revision; returns the runtime spec."""
    gen_dir = service_dir / f"gen-{revision}"
    if gen_dir.exists():
        shutil.rmtree(gen_dir)
    ic = spec.inference_config
    app_dir = gen_dir / "app"
    shutil.copytree(
        ic.app_directory, app_dir, symlinks=False,
        ignore=shutil.ignore_patterns("__pycache__", ".git", "*.pyc", ".aml", "aml-workspace.json", "aml.db*"),
    )
    model_dir = model_dir_layout(workspace, spec.models, gen_dir)
    return {
        "entry_script": str(app_dir / ic.entry_script_relative),
        "source_dir": str(app_dir),
        "model_dir": model_dir,
        "env": dict(ic.environment.environment_variables),
        "scoring_timeout_ms": None,
        "max_body_bytes": None,
    }


def _prune_generations(service_dir: Path, keep: set[int]) -> None:
    for path in service_dir.glob("gen-*"):
        try:
            number = int(path.name.split("-", 1)[1])
        except ValueError:
            continue
        if number not in keep:
            shutil.rmtree(path, ignore_errors=True)


# -- lifecycle ----------------------------------------------------------------------------


def _fail(message: str, record: ServiceRecord | None = None) -> ProvisioningFailed:
    return ProvisioningFailed(message, record=record)


def start(workspace: Workspace, spec: DeploymentSpec) -> ServiceRecord:
    config = spec.deployment_config
    progress: Callable[[str], None] = spec.progress or _noop
    if spec.image is not None:
        # the local target runs the entry script and models it stages itself, not a packaged image
        raise NotSupported(KIND, "deploy_from_image",
                           "Deploy with Model.deploy(ws, name, models, inference_config, ...), or deploy the "
                           "image to a registry-backed target (aci, aks).")
    engine = container.choose_engine(config.engine)
    if engine == "docker":
        return container.start(workspace, spec, _port_free)
    check_environment(spec)
    if config.port is not None and not _port_free(config.port):
        raise Conflict(
            f"Port {config.port} on 127.0.0.1 is already in use. Choose another with "
            f"LocalWebservice.deploy_configuration(port=...), or leave port unset to get a free one."
        )
    service_dir = workspace.service_dir(KIND, spec.name)
    for stale in ("state.json", "spec.json"):
        (service_dir / stale).unlink(missing_ok=True)
    _prune_generations(service_dir, keep=set())
    progress("Staging the entry script, source folder and models")
    runtime_spec = _stage(workspace, spec, service_dir, 1)
    _write_json(service_dir / "spec.json", runtime_spec)
    log_path = service_dir / LOG_NAME
    if log_path.exists() and log_path.stat().st_size > MAX_LOG_BYTES:
        os.replace(log_path, log_path.with_suffix(".log.1"))
    command = [
        sys.executable, "-m", "aml_core.runtime", "serve",
        "--host", "127.0.0.1",
        "--port", str(config.port or 0),
        "--workers", str(config.workers),
        "--spec", str(service_dir / "spec.json"),
        "--state", str(service_dir / "state.json"),
    ]
    progress(f"Starting the scoring runtime ({config.workers} worker{'s' if config.workers > 1 else ''})")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, cwd=str(service_dir),
        )
    details = {
        "pid": process.pid,
        "pid_start": _start_time(process.pid),
        "service_dir": str(service_dir),
        "log": str(log_path),
        "revision": 1,
        "engine": "process",
        "workers": config.workers,
    }
    progress("Running init() in the entry script")
    deadline = time.monotonic() + config.startup_timeout
    while True:
        state = _read_json(service_dir / "state.json")
        code = process.poll()
        if state.get("status") == "ready" and state.get("port"):
            break
        if code is not None:
            failed = ServiceRecord(name=spec.name, kind=KIND, state="failed", models=tuple(m.id for m in spec.models),
                                   details=details, error=state.get("error"))
            if code == 4:
                raise Conflict(
                    f"The scoring runtime could not listen on port {config.port}: it is in use. Choose another port."
                )
            reason = state.get("error") or _last_error_line(log_path)
            raise _fail(
                f"Service {spec.name!r} failed to start (exit code {code}): {reason}. "
                f"See service.get_logs() or `aml service logs {spec.name}` for the traceback.",
                attrs.evolve(failed, error=reason),
            )
        if time.monotonic() > deadline:
            stop_process(details)
            raise _fail(
                f"Service {spec.name!r} did not become ready within {config.startup_timeout:.0f} s (init() still running?). "
                f"Raise startup_timeout in deploy_configuration, or check service.get_logs()."
            )
        time.sleep(_POLL)
    port = state["port"]
    progress(f"Healthy: http://127.0.0.1:{port}/score")
    return ServiceRecord(
        name=spec.name,
        kind=KIND,
        state="running",
        scoring_uri=f"http://127.0.0.1:{port}/score",
        swagger_uri=f"http://127.0.0.1:{port}/swagger.json",
        models=tuple(m.id for m in spec.models),
        details={**details, "port": port},
    )


def _last_error_line(log_path: Path) -> str:
    lines = [line for line in tail(log_path, 200).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line.strip()
    return lines[-1].strip() if lines else "no output"


def update(workspace: Workspace, service: ServiceRecord, spec: DeploymentSpec) -> ServiceRecord:
    """Swap in a new generation with no failed request; on failure the old one keeps serving."""
    progress = spec.progress or _noop
    details = dict(service.details)
    config = spec.deployment_config
    if details.get("engine") == "docker" or container.choose_engine(config.engine) == "docker":
        if details.get("engine") == "docker":
            return container.update(workspace, service, spec, _port_free)
        stop_process(details)
        return start(workspace, spec)
    port_changed = config.port is not None and config.port != details.get("port")
    workers_changed = config.workers != details.get("workers")
    if not process_running(details) or port_changed or workers_changed:
        why = "it is not running" if not process_running(details) else "its port or worker count changed"
        progress(f"Restarting service {spec.name!r} ({why})")
        stop_process(details)
        return start(workspace, spec)
    check_environment(spec)
    service_dir = Path(details["service_dir"])
    old_revision = int(details.get("revision", 1))
    revision = old_revision + 1
    progress(f"Staging revision {revision}")
    old_spec = _read_json(service_dir / "spec.json")
    runtime_spec = _stage(workspace, spec, service_dir, revision)
    _write_json(service_dir / "spec.json", runtime_spec)
    progress("Starting the new workers beside the old ones (zero-downtime reload)")
    # The supervisor numbers every reload attempt, failed ones included.
    before = _read_json(service_dir / "state.json")
    old_workers = list(before.get("workers") or [])
    expected = max(before.get("generation") or 0, (before.get("reload") or {}).get("generation") or 0) + 1
    os.kill(details["pid"], signal.SIGHUP)
    deadline = time.monotonic() + config.startup_timeout
    while True:
        reload = _read_json(service_dir / "state.json").get("reload") or {}
        if reload.get("generation") == expected and reload.get("status") in ("ready", "failed"):
            break
        if not process_running(details):
            raise _fail(f"The supervisor of {spec.name!r} exited during the update; see service.get_logs().")
        if time.monotonic() > deadline:
            raise _fail(f"The new version of {spec.name!r} did not become ready within {config.startup_timeout:.0f} s.")
        time.sleep(_POLL)
    if reload["status"] == "failed":
        _write_json(service_dir / "spec.json", old_spec)
        shutil.rmtree(service_dir / f"gen-{revision}", ignore_errors=True)
        raise _fail(
            f"The new version of {spec.name!r} failed to start: {reload.get('error')}. The previous version "
            f"keeps serving. See service.get_logs() for the traceback."
        )
    progress(f"Revision {revision} is serving; waiting for the old workers to finish their requests")
    # Until the old workers exit they may still accept on the shared socket; once update()
    # returns, every request must reach the new code.
    drain_deadline = time.monotonic() + 60
    while any(_start_time(pid) is not None for pid in old_workers) and time.monotonic() < drain_deadline:
        time.sleep(_POLL)
    _prune_generations(service_dir, keep={revision})
    return attrs.evolve(
        service,
        state="running",
        models=tuple(m.id for m in spec.models),
        error=None,
        updated_time=utcnow(),
        details={**details, "revision": revision},
    )


def stop_process(details: dict[str, Any], timeout: float = 15.0) -> bool:
    """Stop the supervisor gracefully, then its whole process group. True if it was running."""
    pid = details.get("pid")
    if not pid or not process_running(details):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _start_time(pid) is not None:
        time.sleep(_POLL)
    try:  # anything left in the group (a worker that ignored SIGTERM) goes now
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _start_time(pid)  # reap if it was our child
    return True


def delete(workspace: Workspace, service: ServiceRecord) -> bool:
    details = service.details
    if details.get("engine") == "docker":
        return container.delete(workspace, service)
    was_running = stop_process(details)
    service_dir = Path(details.get("service_dir") or workspace.root / "services" / KIND / service.name)
    existed = service_dir.exists()
    shutil.rmtree(service_dir, ignore_errors=True)
    return was_running or existed


def status(service: ServiceRecord) -> ServiceRecord:
    if service.details.get("engine") == "docker":
        return container.status(service)
    if service.state in ("Transitioning", "failed"):
        return service
    if process_running(service.details):
        state = _read_json(Path(service.details["service_dir"]) / "state.json")
        if state.get("status") == "ready":
            return attrs.evolve(service, state="running", error=None) if service.state != "running" else service
        return attrs.evolve(service, state="unknown", error=state.get("error"))
    return attrs.evolve(
        service, state="failed",
        error="The service's processes are no longer running (machine restarted or killed). Redeploy it with "
              "overwrite=True, or delete it.",
    )


def logs(service: ServiceRecord, num_lines: int) -> str:
    if service.details.get("engine") == "docker":
        return container.logs(service, num_lines)
    path = service.details.get("log")
    if not path:
        return ""
    return tail(Path(path), num_lines)
