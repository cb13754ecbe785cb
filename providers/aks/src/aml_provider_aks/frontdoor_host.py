"""The front door on a real cluster: ``python -m aml_provider_aks.frontdoor_host``.

Serves :class:`aml_core.frontdoor.FrontDoor` (the standalone server of
:mod:`aml_core.frontdoor.standalone`: the front door's own HTTP/1.1 server on uvloop and
httptools) and keeps its routes equal to the cluster's objects with the official
``kubernetes`` client: two background threads list and then watch, in all namespaces, the
Secrets labelled ``aml.frontdoor/service`` (routing entries) and the Endpoints (ready
replicas), and hand what they see to :class:`aml_core.frontdoor.kube.RouteSync`, the same code
the emulator's in-process front door runs. A watch that ends, or answers 410 Gone, is
followed by a fresh list and a resync, so nothing missed in between survives; errors are
retried with a capped back-off.

Options: ``--kubeconfig PATH`` (else the pod's service account: the token and CA in
``--service-account-dir``, default the standard mount, and ``$KUBERNETES_SERVICE_HOST``),
``--host``, ``--port``, ``--admin-token-file`` (or ``$AML_FRONTDOOR_ADMIN_TOKEN``), and
``--publish URL`` to write ConfigMap/Secret ``azureml/azureml-fe`` so that clients
(:func:`aml_provider_aks.frontdoor.locate`) find this front door at ``URL``. SIGTERM or
SIGINT: the watches stop, in-flight requests are answered, exit status 0.

In a pod it needs get/list/watch on secrets and endpoints cluster-wide, and with
``--publish`` get/create/update on configmaps and secrets in namespace ``azureml``;
:func:`aml_provider_aks.frontdoor_install.install_frontdoor` sets all of that up.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from aml_core.frontdoor import kube, standalone
from aml_core.frontdoor.kube import RouteSync

log = logging.getLogger("aml_provider_aks.frontdoor_host")

#: seconds a watch lasts before it is ended, and everything listed again
WATCH_SECONDS = 300
#: back-off bounds, in seconds, after a failed list or watch
RETRY_FIRST, RETRY_MAX = 0.5, 30.0
#: where a pod's service-account token and the cluster's CA are mounted
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def api_client(kubeconfig: str | None, service_account_dir: str = SERVICE_ACCOUNT_DIR):
    """A ``kubernetes.client.ApiClient`` from ``kubeconfig``, else the pod's service account
    (its token and CA in ``service_account_dir``, the API server in ``$KUBERNETES_SERVICE_*``)."""
    from kubernetes import client, config
    from kubernetes.config.incluster_config import InClusterConfigLoader

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        InClusterConfigLoader(token_filename=os.path.join(service_account_dir, "token"),
                              cert_filename=os.path.join(service_account_dir, "ca.crt"),
                              ).load_and_set(client_configuration=configuration)
        return client.ApiClient(configuration)
    raise standalone.UsageError("not running in a pod (no KUBERNETES_SERVICE_HOST): give --kubeconfig PATH")


class _Kind:
    def __init__(self, name: str, list_fn: Callable, selector: dict, resync: Callable, on_event: Callable) -> None:
        self.name, self.list_fn, self.selector = name, list_fn, selector
        self.resync, self.on_event = resync, on_event


class ClusterWatch:
    """List + watch of the routing Secrets and all Endpoints, fed to ``routes``; one daemon
    thread per kind. :attr:`synced` is set once both have been listed."""

    def __init__(self, api: Any, routes: RouteSync, *, watch_seconds: int = WATCH_SECONDS) -> None:
        from kubernetes import client

        core = client.CoreV1Api(api)
        self.api = api
        self.watch_seconds = watch_seconds
        self.kinds = (
            _Kind("secrets", core.list_secret_for_all_namespaces, {"label_selector": kube.ENTRY_LABEL},
                  routes.resync_secrets, routes.on_secret),
            _Kind("endpoints", core.list_endpoints_for_all_namespaces, {},
                  routes.resync_endpoints, routes.on_endpoints),
        )
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._watches: set[Any] = set()
        self._threads: list[threading.Thread] = []
        self._listed: set[str] = set()
        self.synced = threading.Event()

    def start(self) -> ClusterWatch:
        for kind in self.kinds:
            thread = threading.Thread(target=self._run, args=(kind,), name=f"frontdoor-watch-{kind.name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            watch.stop()  # also shuts the socket a blocked read waits on
        for thread in self._threads:
            thread.join(timeout)

    # ------------------------------------------------------------------ one kind
    def _run(self, kind: _Kind) -> None:
        from kubernetes.client.exceptions import ApiException

        delay = RETRY_FIRST
        while not self.stopping.is_set():
            try:
                version = self._relist(kind)
                delay = RETRY_FIRST
                self._watch(kind, version)
                continue  # the watch ended: list again
            except ApiException as exc:
                if self.stopping.is_set():
                    return
                if exc.status == 410:
                    log.info("watch of %s expired (410 Gone); listing again", kind.name)
                    continue
                log.warning("listing or watching %s failed (%s %s); retrying in %.1f s",
                            kind.name, exc.status, exc.reason, delay)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any failure
                if self.stopping.is_set():
                    return
                log.warning("listing or watching %s failed (%s: %s); retrying in %.1f s",
                            kind.name, type(exc).__name__, exc, delay)
            self.stopping.wait(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _relist(self, kind: _Kind) -> str:
        listed = kind.list_fn(**kind.selector, _request_timeout=60)
        kind.resync([self.api.sanitize_for_serialization(item) for item in listed.items])
        with self._lock:
            self._listed.add(kind.name)
            if len(self._listed) == len(self.kinds):
                self.synced.set()
        log.debug("listed %d %s at resourceVersion %s", len(listed.items), kind.name,
                  listed.metadata.resource_version)
        return listed.metadata.resource_version

    def _watch(self, kind: _Kind, resource_version: str) -> None:
        from kubernetes import watch

        w = watch.Watch()
        with self._lock:
            if self.stopping.is_set():
                return
            self._watches.add(w)
        try:
            # the read timeout outlasts the server's own end of the watch, and catches a
            # connection that died silently
            for event in w.stream(kind.list_fn, **kind.selector, resource_version=resource_version,
                                  allow_watch_bookmarks=True, timeout_seconds=self.watch_seconds,
                                  _request_timeout=(30, self.watch_seconds + 60), deserialize=False):
                if self.stopping.is_set():
                    return
                kind_of_event = event.get("type")
                if kind_of_event in ("ADDED", "MODIFIED", "DELETED"):
                    kind.on_event(event["object"], kind_of_event == "DELETED")
        finally:
            with self._lock:
                self._watches.discard(w)


# ------------------------------------------------------------------ the process
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aml_provider_aks.frontdoor_host",
        description="Serve the front door, routing by the cluster's aml.frontdoor/service Secrets and Endpoints.")
    standalone.add_arguments(parser)
    parser.add_argument("--kubeconfig", default=os.environ.get("AML_FRONTDOOR_KUBECONFIG"),
                        help="kubeconfig of the cluster to watch (default: the pod's service account)")
    parser.add_argument("--service-account-dir", default=SERVICE_ACCOUNT_DIR, metavar="DIR",
                        help="without --kubeconfig: the pod's service-account token and ca.crt "
                             f"(default {SERVICE_ACCOUNT_DIR})")
    parser.add_argument("--publish", metavar="URL",
                        help="write ConfigMap/Secret azureml/azureml-fe so that clients find this front door at URL")
    parser.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        token = standalone.admin_token(args)
        api = api_client(args.kubeconfig, args.service_account_dir)
    except (standalone.UsageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a kubeconfig the client cannot use, in any way
        print(f"error: cannot load the cluster configuration: {exc}", file=sys.stderr)
        return 2

    from aml_core.frontdoor import FrontDoor

    frontdoor = FrontDoor(token)
    watcher = ClusterWatch(api, RouteSync(frontdoor))
    sock = standalone.listen(args.host, args.port)
    print(f"front door listening on {args.host}:{sock.getsockname()[1]}", flush=True)

    def started() -> None:
        watcher.start()
        if args.publish:
            threading.Thread(target=_publish, args=(api, args.publish.rstrip("/"), token, watcher),
                             name="frontdoor-publish", daemon=True).start()

    try:
        standalone.serve(frontdoor, sock, on_started=started)
    finally:
        watcher.stop()
        api.close()
    return 0


def _publish(api: Any, url: str, token: str, watcher: ClusterWatch) -> None:
    """Publish once the routes are listed (a client that finds this front door should find
    its services routed), retrying until it works or the process stops."""
    from kubernetes import client

    from aml_provider_aks.frontdoor import publish

    watcher.synced.wait(60)
    delay = RETRY_FIRST
    while not watcher.stopping.is_set():
        try:
            publish(client.CoreV1Api(api), url, token)
            log.info("published %s in ConfigMap/Secret %s/%s", url, kube.NAMESPACE, kube.NAME)
            return
        except Exception as exc:  # noqa: BLE001 - retried until it works
            log.warning("publishing the front door's address failed (%s); retrying in %.1f s", exc, delay)
        watcher.stopping.wait(delay)
        delay = min(delay * 2, RETRY_MAX)


if __name__ == "__main__":
    sys.exit(main())
