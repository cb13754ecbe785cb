"""Run an image without a container engine: unpack it and start its entrypoint as a process.

The image's layers (only the app's own ones when the image says which, in the
``org.aml.app-layers`` label: the base's operating system is never needed on the host) are
unpacked into ``<cache>/images/<manifest digest>``; the environment is materialised once
(:mod:`aml_core.engines.environments`); the entrypoint runs with the image's environment
variables, the ones naming image paths (label ``org.aml.path-env``) remapped into the
unpacked root, ``AML_HOST=127.0.0.1`` and ``AML_PORT`` set to the host port. Each container is
its own process group, so stopping it stops every worker it forked. Output goes to
``<cache>/logs/<name>-<pid>.log``.

Security note (fidelity S12): environment variables of a process are readable by the same
user through ``/proc/<pid>/environ``; pass secrets to local processes through files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from aml_core.engines.base import Engine, RunningContainer
from aml_core.engines.environments import materialise
from aml_core.errors import InvalidConfig, ProvisioningFailed
from aml_core.oci.image import (
    LABEL_APP_LAYERS,
    LABEL_ENVIRONMENT,
    LABEL_PATH_ENV,
    EnvironmentSpec,
    app_layer_count,
)
from aml_core.oci.testing import free_port
from aml_core.oci.unpack import unpack_image

#: host variables a process keeps (the image's own Env replaces the rest)
PASSTHROUGH = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "LOGNAME")


@attrs.frozen
class LaunchPlan:
    """An unpacked image ready to start: argv, environment and working directory."""

    argv: list[str]
    env: dict[str, str] = attrs.field(repr=False)
    cwd: str | None
    image_digest: str
    #: the unpacked image's root directory (where absolute image paths are remapped to)
    rootfs: str | None = None


class ProcessContainer(RunningContainer):
    def __init__(
        self, *, name: str, url: str, image_digest: str, process: subprocess.Popen, log_path: Path
    ) -> None:
        self.name, self.url, self.image_digest = name, url, image_digest
        self.process = process
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"ProcessContainer(name={self.name!r}, url={self.url!r}, pid={self.process.pid})"

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            if self.wait(timeout) is None:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # workers that outlived the supervisor are in the same group: make sure they are gone
        _signal_group(self.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while group_members(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``, read from /proc on Linux."""
    members = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after ')'
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ProcessEngine(Engine):
    """Runs images as local processes; see the module docstring.

    :param allow_current_interpreter: use this Python when it already satisfies the image's
        environment (fast; the default), instead of always building a cached venv.
    """

    kind = "process"

    def __init__(self, *, allow_current_interpreter: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.allow_current_interpreter = allow_current_interpreter

    def prepare(
        self,
        image,
        *,
        port: int,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
    ) -> LaunchPlan:
        """Unpack ``image`` and materialise its environment; what to execute, not yet started.

        ``args``, when given, replace the image's ``Cmd`` (what Kubernetes does with a
        container's ``args``): the argv is ``Entrypoint + args``.

        For callers that supervise the process themselves (the emulator's kubelet keeps
        its own logs and restart policy); :meth:`run` is ``prepare`` plus ``Popen``.
        """
        image = self.resolve(image)
        config = image.config_json()
        inner = config.get("config") or {}
        labels = inner.get("Labels") or {}
        if LABEL_ENVIRONMENT not in labels:
            raise InvalidConfig(
                f"image {image.digest} has no {LABEL_ENVIRONMENT} label, so the process engine "
                "cannot tell which Python packages it needs; build it with aml_core.oci.build_image"
            )
        top = app_layer_count(image) if LABEL_APP_LAYERS in labels else None
        unpacked = unpack_image(image, self.cache_dir / "images", top_layers=top)
        python = materialise(
            EnvironmentSpec.from_label(labels[LABEL_ENVIRONMENT]),
            self.cache_dir,
            allow_current=self.allow_current_interpreter,
        )
        process_env = self._environment(inner, labels, unpacked.rootfs, python, port, env or {})
        cmd = list(inner.get("Cmd") or []) if args is None else [str(a) for a in args]
        argv = list(inner.get("Entrypoint") or []) + cmd
        if not argv:
            raise InvalidConfig(
                f"image {image.digest} has neither Entrypoint nor Cmd; nothing to run"
            )
        cwd = _remap(inner.get("WorkingDir") or "/", unpacked.rootfs)
        return LaunchPlan(
            argv=argv, env=process_env, cwd=cwd if os.path.isdir(cwd) else None,
            image_digest=image.digest, rootfs=str(unpacked.rootfs),
        )

    def run(
        self, image, *, name: str, port: int | None = None, env: Mapping[str, str] | None = None
    ) -> ProcessContainer:
        port = port or free_port()
        plan = self.prepare(image, port=port, env=env)
        argv, process_env, cwd = plan.argv, plan.env, plan.cwd
        logs = self.cache_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}-{int(time.time() * 1000)}.log"
        with open(log_path, "ab") as log:
            try:
                process = subprocess.Popen(
                    argv,
                    env=process_env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ProvisioningFailed(
                    f"could not start {argv[0]!r} for {name!r}: {exc}"
                ) from exc
        return ProcessContainer(
            name=name,
            url=f"http://127.0.0.1:{port}",
            image_digest=plan.image_digest,
            process=process,
            log_path=log_path,
        )

    @staticmethod
    def _environment(
        inner: dict, labels: dict, rootfs: Path, python: str, port: int, extra: Mapping[str, str]
    ) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
        path_vars = set(filter(None, labels.get(LABEL_PATH_ENV, "").split(",")))
        for item in inner.get("Env") or []:
            key, _, value = item.partition("=")
            if key == "PATH":
                continue  # the host's PATH, with the environment's interpreter first
            env[key] = (
                ":".join(_remap(p, rootfs) for p in value.split(":")) if key in path_vars else value
            )
        env["PATH"] = os.pathsep.join([os.path.dirname(python), os.environ.get("PATH", os.defpath)])
        env["AML_HOST"] = "127.0.0.1"
        env["AML_PORT"] = str(port)
        env.update(extra)
        return env


def _remap(path: str, rootfs: Path) -> str:
    """An absolute image path → the same path inside the unpacked root."""
    if not path.startswith("/"):
        return path
    return str(rootfs / path.lstrip("/"))
