"""The emulated Azure Resource Manager, served over HTTPS from a CA made at start-up.

>>> arm = ArmService(state_dir)              # doctest: +SKIP
>>> arm.add_registry("amlemulator", registry_service, subscription_id=..., resource_group=...)
>>> arm.start()
>>> arm.url, arm.token, arm.ca_bundle       # point azure-mgmt-* clients here
>>> arm.script_operations("Microsoft.ContainerService/managedClusters", OperationScript.after_polls(3))

Resources of the types a provider declares persistent (managed clusters, container groups)
are kept in ``state_dir/resources.json`` (0600, in a 0700 directory) and come back when a
service starts again on the same directory. Long-running operations answer as Azure does and
can be scripted by tests: see :mod:`aml_emulator.arm.operations`.

Implemented operations: see ``emulator/README.md`` (generated from :func:`support_matrix`).
"""

from __future__ import annotations

import shutil
import time
import tempfile
from pathlib import Path
from typing import Callable

from aml_core.secure_files import private_dir

from aml_emulator._http import BackgroundServer
from aml_emulator.arm.app import PROVIDERS, ArmApp
from aml_emulator.arm.containerregistry import REGISTRIES, RegistryResource
from aml_emulator.arm.models import ArmBackend, RegistryBackend, ResourceStore
from aml_emulator.arm.operations import OperationScript
from aml_emulator.arm.tls import CertificateAuthority

__all__ = ["ArmService", "CertificateAuthority", "OperationScript", "support_matrix"]

#: seconds in-flight requests get to finish when the service stops
_GRACE_SECONDS = 1.0


def support_matrix() -> list[tuple[str, str, str, str, str]]:
    """``(namespace, method, resource type, kind, SDK call)`` of every implemented operation."""
    rows = []
    for provider in PROVIDERS:
        for method, resource_type, kind, summary in provider.support_matrix():
            rows.append((provider.namespace, method, resource_type, kind, summary))
    return rows


class ArmService:
    """Azure Resource Manager endpoints on a loopback ephemeral port, over TLS.

    :param state_dir: where the CA and server certificate live; ``None``: a temporary
        directory removed by :meth:`stop`.
    :param token: the static bearer token to accept; ``None``: a random one (see :attr:`token`).
    :param ca: the CA to sign the server certificate with; default: the one in ``state_dir``.
    :param loose: accept any api-version (nothing else is relaxed).
    :param clock: the seconds clock of ``after_seconds`` operation scripts (default
        ``time.monotonic``); a test passes one it advances by hand.
    :param retry_after: seconds between polls asked of clients while an operation runs (> 0;
        whole seconds go out as ``Retry-After``, fractions as ``retry-after-ms``).
    :param services: what resource providers with running parts need, by name: ``"engine"``
        (an :class:`aml_core.engines.Engine` that runs container groups' images).
    """

    def __init__(self, state_dir: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, ca: CertificateAuthority | None = None,
                 loose: bool = False, clock: Callable[[], float] | None = None, retry_after: float = 1.0,
                 services: dict[str, object] | None = None) -> None:
        self._owns_state = state_dir is None
        self.state_dir = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="aml-arm-"))
        self.host = host
        self.port = port
        self.backend = ArmBackend(clock=clock, retry_after=retry_after)
        self.backend.services.update(services or {})
        self._token = self.backend.tokens.issue(token)
        self.ca = ca
        self.loose = loose
        self._server: BackgroundServer | None = None

    @property
    def token(self) -> str:
        """The static bearer token this emulator accepts (a secret: never log it)."""
        return self._token

    def issue_token(self) -> str:
        """Issue one more accepted token (revoked by :meth:`reset`)."""
        return self.backend.tokens.issue()

    def add_registry(self, name: str, service: RegistryBackend, *, subscription_id: str,
                     resource_group: str, location: str = "westus") -> None:
        """Expose a running registry service as a ``Microsoft.ContainerRegistry`` registry."""
        self.backend.add_resource(
            subscription_id, resource_group, REGISTRIES,
            RegistryResource(name=name, service=service, location=location),
        )

    def script_operations(self, resource_type: str, script: OperationScript, *, operation: str | None = None,
                          name: str | None = None) -> None:
        """Make long-running operations on ``resource_type`` proceed as ``script`` says
        (at once, after N polls or T seconds of the clock, or failing with an ARM error).

        :param operation: ``create``, ``update``, ``delete``, or an action such as
            ``restart``/``start``; ``None`` for all of them.
        :param name: one resource's name; ``None`` for every resource of the type.

        Scripts hold until :meth:`clear_operation_scripts` or :meth:`reset`.
        See :mod:`aml_emulator.arm.operations`.
        """
        self.backend.operations.script(resource_type, script, operation=operation, name=name)

    def clear_operation_scripts(self) -> None:
        """Let every operation finish as its work does again."""
        self.backend.operations.clear_scripts()

    def add_kubernetes(self, kubeconfig: Callable[[], str],
                       node_resources: Callable[[dict[str, int]], None] | None = None) -> None:
        """Back ``Microsoft.ContainerService/managedClusters`` with an emulated cluster:
        ``kubeconfig()`` returns its kubeconfig YAML (what ``listClusterUserCredential`` hands out).
        ``node_resources({name: count})``, when given, is told the extended resources (FPGAs)
        the managed clusters' node pools bring, each time a cluster is created or deleted."""
        self.backend.kubeconfig = kubeconfig
        if node_resources is not None:
            from aml_emulator.arm.managedclusters import advertise_fpgas

            self.backend.services["node_resources"] = node_resources
            advertise_fpgas(self.backend)  # the clusters a restarted emulator has stored

    @property
    def ca_bundle(self) -> Path:
        """The CA certificate clients must trust (``connection_verify``)."""
        if self.ca is None:
            raise RuntimeError("ArmService.start() has not been called")
        return self.ca.cert_path

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("ArmService.start() has not been called")
        return self._server.url

    def start(self) -> "ArmService":
        if self._server is not None:
            return self
        private_dir(self.state_dir)  # the CA key and issued server keys live here
        if self.ca is None:
            self.ca = CertificateAuthority.load_or_create(self.state_dir)
        # what providers serving their own hosts (web apps) sign certificates with, and where
        self.backend.services.setdefault("ca", self.ca)
        self.backend.services.setdefault("state_dir", self.state_dir)
        loaders = {k: v for provider in PROVIDERS for k, v in provider.persistent.items()}
        self.backend.attach_store(ResourceStore(self.state_dir, loaders))
        hosts = tuple(dict.fromkeys([self.host, "127.0.0.1", "localhost", "::1"]))
        certfile, keyfile = self.ca.issue_server_cert(self.state_dir, "arm", hosts)
        self._server = BackgroundServer(
            ArmApp(self.backend, loose=self.loose), host=self.host, port=self.port,
            certfile=str(certfile), keyfile=str(keyfile), name="aml-emulator-arm",
        )
        self._server.start()
        for provider in PROVIDERS:
            for hook in provider.on_start:
                hook(self.backend)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._stop_running_parts()
            server, self._server = self._server, None
            uvicorn_server = server._server  # noqa: SLF001 - same package
            uvicorn_server.should_exit = True
            # Let in-flight requests finish (bounded), then stop waiting: an idle keep-alive
            # TLS connection (every azure-core client keeps one) never answers the TLS close
            # handshake, and uvicorn would wait on it for its 30 s SSL shutdown timeout.
            deadline = time.monotonic() + _GRACE_SECONDS
            while uvicorn_server.server_state.tasks and time.monotonic() < deadline:
                time.sleep(0.02)
            uvicorn_server.force_exit = True
            server.stop()
        if self._owns_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def _stop_running_parts(self) -> None:
        for provider in PROVIDERS:
            for hook in provider.on_stop:
                hook(self.backend)

    def reset(self) -> None:
        """Revoke every token issued since start except the static one; stop and forget
        every resource not backed by another service, every operation and every script."""
        self.backend.tokens.revoke_all_but(self._token)
        self._stop_running_parts()
        self.backend.reset()

    def __enter__(self) -> "ArmService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._server.url if self._server else "not started"
        return f"ArmService({where})"
