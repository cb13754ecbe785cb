"""The supervisor: one listening socket, N worker processes, zero-downtime reloads.

Contract (relied on by the local provider and by images)::

    python -m aml_core.runtime serve --host H --port P --workers N
        [--spec SPEC.json] [--state STATE.json] [--entry_script F --model_dir D]

* binds ``H:P`` once (``P=0``: an ephemeral port, reported in the state file) and starts N
  workers that all accept on that socket;
* ``--state`` is rewritten atomically on every change::

      {"pid": supervisor pid, "port": P, "generation": n,
       "status": "starting" | "ready" | "failed" | "stopped", "error": str | null,
       "workers": [pids of the serving generation],
       "reload": null | {"generation": n, "status": "in_progress" | "ready" | "failed",
                         "error": str | null},
       "restarts": number of unexpected worker deaths replaced}

* SIGHUP: re-read the spec, start a new generation, switch when all of it is ready, then
  stop the old one gracefully; if the new one fails, the old one keeps serving;
* SIGTERM / SIGINT: stop every worker gracefully, write ``"stopped"``, exit 0;
* a worker that dies is replaced after a bounded backoff (0.5 s doubling to 30 s);
* the spec's ``memory_limit_bytes`` (optional) caps the resident memory of the supervisor
  and its workers together, as a container's memory limit does: when they are over it, the
  largest worker is SIGKILLed (what the kernel's OOM killer picks), logged as
  ``OOMKilled`` and replaced; the state file counts these in ``"oom_kills"`` and describes
  the last in ``"last_oom"``. It is checked every half second (see ``aml_core.limits``);
* exit status 3: the first generation failed (``init()`` raised, script missing ...);
  4: the address cannot be bound (``port P is already in use``); 2: bad arguments or spec.

A worker that dies mid-request (``run()`` calls ``os._exit``, a segfault in a native
library, the OOM killer) cannot be answered for by the supervisor, and it does not try.
Workers accept on the shared socket themselves, so each connection's descriptor exists only
in the worker that accepted it; when that process ends, the kernel closes the connection
(the client sees it reset or closed with no response, at once: never a hang, and never a
partial body passed off as whole). For the supervisor to answer instead it would have to
hold a duplicate of every accepted connection, passed over a UNIX socket (``SCM_RIGHTS``) at
each accept, and know how much of a response had already been written: a round trip to the
supervisor on every connection, and a shared record of every response's progress, on the
path the runtime keeps free of either. What it does: log the death (``Worker N died
unexpectedly (exited with code C)``), count it in ``restarts`` and start a replacement, while
the other workers go on serving. Clients that need a status code get one from the front door
on a cluster, which answers 502 ``BadGateway`` for a replica that closed without answering.
Tested in ``aml_core/tests/runtime/test_runtime_crash.py``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from aml_core.errors import InvalidConfig
from aml_core.limits import process_rss
from aml_core.runtime import logs

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INIT_FAILED = 3
EXIT_BIND_FAILED = 4

RESTART_BACKOFF_START = 0.5
RESTART_BACKOFF_MAX = 30.0
#: a worker that lived this long resets its slot's backoff
RESTART_BACKOFF_RESET_AFTER = 30.0
STOP_TIMEOUT = float(os.environ.get("AML_RUNTIME_STOP_TIMEOUT", "40"))

logger = logging.getLogger(logs.LOGGER_NAME + ".supervisor")


class Worker:
    """A worker process as the supervisor sees it."""

    def __init__(self, pid: int, generation: int, slot: int, status_fd: int) -> None:
        self.pid = pid
        self.generation = generation
        self.slot = slot
        self.status_fd = status_fd
        self.buffer = b""
        self.ready = False
        self.draining = False
        self.stopping = False
        self.error: str | None = None
        self.started_at = time.monotonic()
        self.stop_deadline = float("inf")
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status once the process has ended (negative: killed by that signal)."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.returncode


class Supervisor:
    def __init__(
        self,
        host: str,
        port: int,
        workers: int,
        load_config: Callable[[], dict],
        state_path: str | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port = port
        self.count = workers
        self.load_config = load_config
        self.state_path = state_path
        self.sock: socket.socket | None = None
        self.generation = 0
        self.status = "starting"
        self.error: str | None = None
        self.reload_info: dict | None = None
        self.restarts = 0
        self.oom_kills = 0
        self.last_oom: dict | None = None
        self.workers: dict[int, Worker] = {}  # pid -> worker, every generation
        self.current: dict[int, Worker] = {}  # slot -> worker of the serving generation
        self.pending: dict[int, Worker] | None = None  # slot -> worker of a reload generation
        self.pending_generation = 0
        self.reload_requested = False
        self.stop_requested = False
        self.backoff: dict[int, float] = {}
        self.restart_at: dict[int, float] = {}  # slot -> monotonic time of a scheduled restart
        self.config: dict | None = None
        self._pending_config: dict | None = None
        self._retiring: list[Worker] = []
        self.selector = selectors.DefaultSelector()
        self._signals: list[int] = []
        self._wakeup_r = self._wakeup_w = -1

    # --- state file ----------------------------------------------------------------------------
    def write_state(self) -> None:
        if not self.state_path:
            return
        state = {
            "pid": os.getpid(),
            "port": self.port,
            "generation": self.generation,
            "status": self.status,
            "error": self.error,
            "workers": sorted(w.pid for w in self.current.values()),
            "reload": self.reload_info,
            "restarts": self.restarts,
            "oom_kills": self.oom_kills,
            "last_oom": self.last_oom,
        }
        directory = os.path.dirname(os.path.abspath(self.state_path))
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(state, handle)
            os.replace(tmp, self.state_path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    # --- start ---------------------------------------------------------------------------------
    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise BindError(f"port {self.requested_port} is already in use") from exc
            raise BindError(
                f"cannot listen on {self.host}:{self.requested_port}: {exc.strerror}"
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        sock.listen(2048)
        sock.set_inheritable(True)
        self.sock = sock
        self.port = sock.getsockname()[1]

    def _install_signals(self) -> None:
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(self._wakeup_w, False)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        self.selector.register(self._wakeup_r, selectors.EVENT_READ, None)

        def record(signum: int, frame: Any) -> None:
            self._signals.append(signum)

        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, record)

    def spawn(self, generation: int, slot: int) -> Worker:
        """Fork a worker. Forking (not exec) skips interpreter start-up and re-imports."""
        assert self.sock is not None and self.config is not None
        status_r, status_w = os.pipe()
        worker_config = dict(
            self.config, parent_pid=os.getpid(), generation=generation, workers=self.count
        )
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:  # the worker; never returns into the supervisor's loop
            code = 1
            try:
                os.close(status_r)
                self._forget_in_child()
                from aml_core.runtime import worker as worker_module

                code = worker_module.main(self.sock, status_w, worker_config)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - report anything, then leave
                import traceback

                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except (OSError, ValueError):
                        pass
                os._exit(code)
        os.close(status_w)
        os.set_blocking(status_r, False)
        worker = Worker(pid, generation, slot, status_r)
        self.workers[pid] = worker
        self.selector.register(status_r, selectors.EVENT_READ, worker)
        logger.info("Started worker %d (generation %d, slot %d)", pid, generation, slot)
        return worker

    def _forget_in_child(self) -> None:
        """Drop the supervisor's signal handling and descriptors in a freshly forked worker."""
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.selector.close()
        for fd in (self._wakeup_r, self._wakeup_w):
            try:
                os.close(fd)
            except OSError:
                pass
        for other in self.workers.values():
            if other.status_fd >= 0:
                try:
                    os.close(other.status_fd)
                except OSError:
                    pass

    # --- main loop -----------------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        self.config = self.load_config()
        _preload_server_modules()
        self.generation = 1
        self.write_state()
        for slot in range(self.count):
            self.current[slot] = self.spawn(1, slot)
        self.write_state()
        logger.info("Listening on http://%s:%d with %d worker(s)", self.host, self.port, self.count)
        exit_code: int | None = None
        try:
            while exit_code is None:
                exit_code = self._step()
        finally:
            self._kill_all()
        return exit_code

    def _step(self) -> int | None:
        timeout = 0.5
        now = time.monotonic()
        if self.restart_at:
            timeout = max(0.0, min(timeout, min(self.restart_at.values()) - now))
        for key, _events in self.selector.select(timeout):
            if key.data is None:
                self._drain_wakeup()
            else:
                self._read_status(key.data)
        self._handle_signals()
        if self.stop_requested:
            return self._stop()
        code = self._reap()
        if code is not None:
            return code
        self._enforce_memory_limit()
        self._restart_due()
        if (
            self.reload_requested
            and self.pending is None
            and not self._retiring
            and self.status == "ready"
        ):
            self.reload_requested = False
            self._start_reload()
        return None

    def _enforce_memory_limit(self) -> None:
        limit = (self.config or {}).get("memory_limit_bytes")
        if not limit:
            return
        live = [w for w in self.workers.values() if w.returncode is None and not w.stopping]
        sizes = {w.pid: process_rss(w.pid) for w in live}
        used = process_rss(os.getpid()) + sum(sizes.values())
        if used <= limit or not live:
            return
        victim = max(live, key=lambda w: sizes[w.pid])
        message = (f"OOMKilled: the service used {used} bytes of memory, over its limit of {int(limit)} "
                   f"bytes; worker {victim.pid} ({sizes[victim.pid]} bytes) was killed")
        victim.error = message
        self.oom_kills += 1
        self.last_oom = {"time": time.time(), "worker": victim.pid, "used_bytes": used,
                         "limit_bytes": int(limit), "message": message}
        logger.error("%s", message)
        victim.kill()
        self.write_state()

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wakeup_r, 512):
                pass
        except BlockingIOError:
            pass

    def _handle_signals(self) -> None:
        signals, self._signals = self._signals, []
        for signum in signals:
            if signum in (signal.SIGTERM, signal.SIGINT):
                logger.info("Received %s: stopping", signal.Signals(signum).name)
                self.stop_requested = True
            elif signum == signal.SIGHUP:
                logger.info("Received SIGHUP: reloading")
                self.reload_requested = True

    def _read_status(self, worker: Worker) -> None:
        try:
            data = os.read(worker.status_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_status(worker)
            return
        worker.buffer += data
        while b"\n" in worker.buffer:
            line, worker.buffer = worker.buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("status") == "ready":
                self._on_ready(worker)
            elif message.get("status") == "draining":
                worker.draining = True
                self._check_retired()
            elif message.get("status") == "failed":
                worker.error = message.get("error") or "the worker failed to start"

    def _close_status(self, worker: Worker) -> None:
        if worker.status_fd >= 0:
            try:
                self.selector.unregister(worker.status_fd)
            except (KeyError, ValueError):
                pass
            os.close(worker.status_fd)
            worker.status_fd = -1

    def _on_ready(self, worker: Worker) -> None:
        worker.ready = True
        if self.pending is not None and worker.generation == self.pending_generation:
            if all(w.ready for w in self.pending.values()):
                self._promote()
            return
        if worker.generation != self.generation:
            return
        if self.status == "starting" and all(w.ready for w in self.current.values()):
            self.status = "ready"
            logger.info("All %d worker(s) are ready (generation %d)", self.count, self.generation)
        self.write_state()

    # --- reload --------------------------------------------------------------------------------
    def _start_reload(self) -> None:
        self.pending_generation = max(self.generation, self.pending_generation) + 1
        self.reload_info = {
            "generation": self.pending_generation,
            "status": "in_progress",
            "error": None,
        }
        try:
            new_config = self.load_config()
        except InvalidConfig as exc:
            self._reload_failed(str(exc))
            return
        previous, self.config = self.config, new_config
        self.pending = {}
        try:
            for slot in range(self.count):
                self.pending[slot] = self.spawn(self.pending_generation, slot)
        finally:
            self.config = previous
        self._pending_config = new_config
        self.write_state()

    def _promote(self) -> None:
        """The new generation is ready: stop the old one; done once it stops accepting."""
        assert self.pending is not None
        self._retiring = list(self.current.values())
        self.current = self.pending
        self.pending = None
        self.generation = self.pending_generation
        self.config = self._pending_config
        self.restart_at.clear()
        self.backoff.clear()
        logger.info(
            "Generation %d is ready; stopping generation %d", self.generation, self.generation - 1
        )
        for worker in self._retiring:
            self._terminate(worker)
        self._check_retired()

    def _check_retired(self) -> None:
        """Report the reload done when no worker of the old generation accepts any more."""
        if not self._retiring:
            return
        if all(w.draining or w.returncode is not None for w in self._retiring):
            self._retiring = []
            self.reload_info = {"generation": self.generation, "status": "ready", "error": None}
            self.write_state()
            logger.info("Reload to generation %d done", self.generation)

    def _reload_failed(self, error: str) -> None:
        logger.error("Reload to generation %d failed: %s", self.pending_generation, error)
        logger.error("Generation %d keeps serving", self.generation)
        if self.pending is not None:
            for worker in self.pending.values():
                self._terminate(worker, kill=True)
        self.pending = None
        self.reload_info = {
            "generation": self.pending_generation,
            "status": "failed",
            "error": error,
        }
        self.write_state()

    # --- children ------------------------------------------------------------------------------
    def _terminate(self, worker: Worker, kill: bool = False) -> None:
        worker.stopping = True
        worker.stop_deadline = time.monotonic() + STOP_TIMEOUT
        try:
            os.kill(worker.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _reap(self) -> int | None:
        for worker in list(self.workers.values()):
            code = worker.poll()
            if code is None:
                if worker.stopping and time.monotonic() > worker.stop_deadline:
                    logger.warning("Worker %d did not stop in time; killing it", worker.pid)
                    worker.kill()
                continue
            # drain a final status line written just before exiting
            if worker.status_fd >= 0:
                self._read_status(worker)
                self._close_status(worker)
            del self.workers[worker.pid]
            result = self._on_exit(worker, code)
            if result is not None:
                return result
        return None

    def _on_exit(self, worker: Worker, code: int) -> int | None:
        if worker.stopping:
            logger.info("Worker %d stopped", worker.pid)
            self._check_retired()
            return None
        reason = worker.error or f"worker {worker.pid} exited with code {code} before it was ready"
        if self.pending is not None and self.pending.get(worker.slot) is worker:
            self._reload_failed(reason)
            return None
        if self.current.get(worker.slot) is not worker:
            return None
        if self.status == "starting":
            logger.error("Worker %d failed to start: %s", worker.pid, reason)
            self.status = "failed"
            self.error = reason
            for other in self.current.values():
                if other is not worker:
                    self._terminate(other, kill=True)
            self.write_state()
            return EXIT_INIT_FAILED
        lived = time.monotonic() - worker.started_at
        delay = self.backoff.get(worker.slot, RESTART_BACKOFF_START)
        if worker.ready and lived > RESTART_BACKOFF_RESET_AFTER:
            delay = RESTART_BACKOFF_START
        self.backoff[worker.slot] = min(delay * 2, RESTART_BACKOFF_MAX)
        self.restart_at[worker.slot] = time.monotonic() + delay
        what = worker.error or f"exited with code {code}"
        logger.error(
            "Worker %d died unexpectedly (%s); restarting in %.1f s", worker.pid, what, delay
        )
        self.restarts += 1
        self.write_state()
        return None

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self.restart_at.items()):
            if when <= now:
                del self.restart_at[slot]
                self.current[slot] = self.spawn(self.generation, slot)
                self.write_state()

    def _stop(self) -> int:
        self.pending = None
        for worker in self.workers.values():
            if not worker.stopping:
                self._terminate(worker)
        deadline = time.monotonic() + STOP_TIMEOUT + 2
        while self.workers and time.monotonic() < deadline:
            for worker in list(self.workers.values()):
                if worker.poll() is not None:
                    self._close_status(worker)
                    del self.workers[worker.pid]
                elif time.monotonic() > worker.stop_deadline:
                    worker.kill()
            if self.workers:
                time.sleep(0.05)
        self.current = {}
        self.status = "stopped"
        self.write_state()
        logger.info("Stopped")
        return EXIT_OK

    def _kill_all(self) -> None:
        for worker in list(self.workers.values()):
            if worker.poll() is None:
                worker.kill()
        for worker in list(self.workers.values()):
            worker.wait(timeout=5)
            self._close_status(worker)
        self.workers.clear()
        if self.sock is not None:
            self.sock.close()


def _preload_server_modules() -> None:
    """Import the server stack once, so every forked worker starts with it loaded."""
    import uvicorn
    import uvicorn.protocols.http.httptools_impl

    from aml_core.runtime import app, swagger, worker  # noqa: F401

    try:
        import uvicorn.loops.uvloop  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass


class BindError(Exception):
    """The listening address cannot be bound; the message says why."""


def serve(
    host: str,
    port: int,
    workers: int,
    load_config: Callable[[], dict],
    state_path: str | None = None,
) -> int:
    logs.setup_logging(level=os.environ.get("AZUREML_LOG_LEVEL", "INFO"))
    supervisor = Supervisor(host, port, workers, load_config, state_path)
    try:
        supervisor.bind()
    except BindError as exc:
        logger.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        supervisor.status = "failed"
        supervisor.error = str(exc)
        supervisor.write_state()
        return EXIT_BIND_FAILED
    try:
        return supervisor.run()
    except InvalidConfig as exc:
        logger.error("%s", exc)
        supervisor.status = "failed"
        supervisor.error = str(exc)
        supervisor.write_state()
        return EXIT_USAGE
