"""``ImagePodRuntime``: the kubelet runs a pod's *image*, pulled from a registry.

For each container with an ``image`` the runtime

1. pulls the image from its registry with the pod's ``imagePullSecrets`` (``pull_auth``);
   a registry that refuses the credentials, or a pod that has none for a registry that
   needs them, is an :class:`ImagePullError` (the pod shows ``ErrImagePull``, then
   ``ImagePullBackOff``), as on a real node;
2. unpacks and materialises it with :meth:`aml_core.engines.ProcessEngine.prepare` (a
   cache keyed by digest, an environment cached by its hash);
3. starts its entrypoint as a process in its own process group, with the image's
   environment, the pod's resolved ``env`` on top, and the scoring runtime's port (the
   container's port 5001, or its first declared port) mapped to the host port the kubelet
   assigned to the pod; the container's ``args``, when set, replace the image's ``Cmd``
   (``Entrypoint + args``, as Kubernetes does). Killing the container kills the whole group.

The kubelet has already rewritten volume mount paths in ``args`` and ``env`` to the
volumes' host directories, so this runtime gets the same volumes as the process runtime.

A container's ``command`` replaces the image's ``Entrypoint`` (and then its ``args`` the
``Cmd``, which is dropped when there are none), still run with the pulled image's
environment and working directory. Only containers whose image is the pseudo-image
:data:`~aml_emulator.cluster.kubelet.HOST_PROCESS_IMAGE` go to the wrapped ``fallback``
runtime (:class:`~aml_emulator.cluster.kubelet.ProcessRuntime` by default) and run their
command as a plain host process: an explicit opt-in, never the result of an image that
cannot be pulled.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import attrs

from aml_core.engines import ProcessEngine
from aml_core.errors import AmlError, AuthError, NotFound
from aml_core.oci.registry import Reference, RegistryClient, RegistryError

from aml_emulator.cluster.kubelet import (
    HOST_PROCESS_IMAGE,
    ContainerLog,
    ImagePullError,
    ProcessRuntime,
    RunContainerError,
    _Process,
    expand_vars,
)

#: the port the scoring runtime listens on inside an image (azureml's convention)
SCORING_PORT = 5001


class _ImageProcess(_Process):
    """A started image: the process, its log pump, the digest it runs and the unpacked
    root (the container's filesystem for exec and ``kubectl cp``)."""

    def __init__(self, popen: subprocess.Popen, log: ContainerLog, image_digest: str,
                 rootfs: str | None = None) -> None:
        super().__init__(popen, log)
        self.image_digest = image_digest
        self.rootfs = rootfs


class ImagePodRuntime:
    """A :class:`~aml_emulator.cluster.kubelet.PodRuntime` that runs images; see the module docstring.

    :param cache_dir: where pulled blobs, unpacked images and environments are cached
        (default: the process engine's, ``$AML_CACHE_DIR`` or ``~/.cache/aml``).
    :param fallback: the runtime for containers that have no image.
    :param allow_current_interpreter: as for :class:`~aml_core.engines.ProcessEngine`.
    """

    def __init__(self, *, cache_dir: str | Path | None = None, fallback: Any = None,
                 allow_current_interpreter: bool = True) -> None:
        self.engine = ProcessEngine(cache_dir=Path(cache_dir) if cache_dir else None,
                                    allow_current_interpreter=allow_current_interpreter)
        self.fallback = fallback if fallback is not None else ProcessRuntime()
        self._processes = ProcessRuntime()

    def __repr__(self) -> str:
        return f"ImagePodRuntime(cache_dir={str(self.engine.cache_dir)!r})"

    # -- PodRuntime ----------------------------------------------------------------------

    def start(self, pod: dict, container: dict, *, env: dict[str, str], ports: dict[int, int],
              log: ContainerLog, workdir: Path, pull_auth: dict[str, dict[str, str]] | None = None) -> Any:
        image_ref = (container.get("image") or "").strip()
        if image_ref == HOST_PROCESS_IMAGE:
            return self.fallback.start(pod, container, env=env, ports=ports, log=log, workdir=workdir,
                                       pull_auth=pull_auth)
        if not image_ref:
            raise ImagePullError(f'container "{container.get("name")}" names no image')
        image = self._pull(image_ref, pull_auth or {})
        host_port = ports.get(SCORING_PORT) or (next(iter(ports.values())) if ports else None)
        if host_port is None:
            host_port = int(env["PORT"])
        # Kubernetes semantics: ``args`` replace the image's Cmd (``command`` would replace its
        # Entrypoint), with $(VAR) expanded from the container's environment; no args (or an
        # empty list, as containerd reads it) keep the Cmd
        args = [expand_vars(str(a), env) for a in container.get("args") or []] or None
        try:
            plan = self.engine.prepare(image, port=host_port, env=env, args=args)
        except AmlError as exc:
            raise RunContainerError(f'cannot run image "{image_ref}": {exc}') from exc
        if container.get("command"):
            argv = [expand_vars(str(a), env) for a in container["command"]] + (args or [])
            if argv[0].startswith("/") and plan.rootfs and Path(plan.rootfs, argv[0].lstrip("/")).exists():
                argv[0] = str(Path(plan.rootfs, argv[0].lstrip("/")))  # an image path, as the engine remaps them
            plan = attrs.evolve(plan, argv=argv)
        try:
            popen = subprocess.Popen(plan.argv, env=plan.env, cwd=plan.cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        except OSError as exc:
            raise RunContainerError(f"failed to start the entrypoint {plan.argv[0]!r} of {image_ref}: {exc}") from exc
        return _ImageProcess(popen, log, plan.image_digest, plan.rootfs)

    def poll(self, handle: Any) -> int | None:
        return self._owner(handle).poll(handle)

    def kill(self, handle: Any, grace: float) -> None:
        self._owner(handle).kill(handle, grace)

    def logs(self, handle: Any) -> ContainerLog:
        return self._owner(handle).logs(handle)

    # -- helpers -------------------------------------------------------------------------

    def _owner(self, handle: Any) -> Any:
        # An image process is a _Process, so ProcessRuntime's poll/kill (process group
        # SIGTERM, then SIGKILL) apply to it; anything else came from the fallback.
        return self._processes if isinstance(handle, _ImageProcess) else self.fallback

    def _pull(self, image_ref: str, pull_auth: dict[str, dict[str, str]]):
        try:
            ref = Reference.parse(image_ref)
        except (AmlError, ValueError) as exc:
            raise ImagePullError(f'invalid image reference "{image_ref}": {exc}') from exc
        creds = pull_auth.get(ref.registry) or {}
        client = RegistryClient(ref.registry, username=creds.get("username"), password=creds.get("password"))
        try:
            return client.pull_image(ref.repository, ref.reference, blob_dir=self.engine.cache_dir / "blobs")
        except (RegistryError, AuthError) as exc:
            status = getattr(exc, "status", 0)
            if status in (401, 403) or isinstance(exc, AuthError):
                hint = ("no imagePullSecrets entry for this registry" if not creds
                        else "the registry refused the imagePullSecrets credentials")
                raise ImagePullError(f"pull access denied for {image_ref} ({hint}): {exc}") from exc
            raise ImagePullError(f"pulling {image_ref} failed: {exc}") from exc
        except NotFound as exc:
            raise ImagePullError(f"{image_ref}: not found: {exc}") from exc
        except OSError as exc:  # connection refused, DNS ...
            raise ImagePullError(f"cannot reach the registry of {image_ref}: {exc}") from exc
