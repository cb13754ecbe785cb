"""The streaming subresources ``pods/exec`` and ``pods/portforward``, over WebSocket.

What kubectl 1.32 and the official Python client speak:

* **exec** (``kubectl exec``, ``kubectl cp``, ``kubernetes.stream.stream``): a WebSocket
  with subprotocol ``v5.channel.k8s.io`` (or ``v4.channel.k8s.io``). Every binary message
  starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the final ``Status`` (exit
  code), 4 terminal resize (``{"Width","Height"}``); in v5, ``[255, n]`` closes channel n
  (stdin end-of-file). The command runs with the container's environment and working
  directory (read from its main process), with a pseudo-terminal (:mod:`pty`) for ``tty``.
* **port-forward**, kubectl: a WebSocket with subprotocol ``SPDY/3.1+portforward.k8s.io``
  tunnelling a SPDY session (:mod:`spdy`); each forwarded connection is a pair of streams
  (``streamtype: error`` and ``data``, same ``requestid``, ``port`` header).
* **port-forward**, Python client (``kubernetes.stream.portforward``): subprotocol
  ``v4.channel.k8s.io``, ``?ports=a,b``; port i uses channel 2i for data and 2i+1 for
  errors, each opened by the port number as two little-endian bytes.

A port reaches the pod through the loopback port the kubelet mapped its ``containerPort``
to; a port no container declares answers as a closed port would. A client that cannot
speak WebSocket (SPDY upgrade, the pre-1.30 kubectl) gets a 400 naming the protocols served,
after the same checks the apiserver makes.

``kubectl cp`` execs ``tar`` (and ``test -d``); a container here is a process without a
mount namespace, so those exact commands are answered by this module inside the
container's root directory (:func:`resolve_in_root`), never the host's filesystem.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import pty
import shutil
import signal
import struct
import subprocess
import tarfile
import tempfile
import termios
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import parse_qs

from aml_emulator.cluster import exceptions as err
from aml_emulator.cluster import spdy
from aml_emulator.cluster.kubelet import RunningContainer
from aml_emulator.cluster.models import lookup

if TYPE_CHECKING:
    from aml_emulator.cluster.api import ClusterAPI

log = logging.getLogger(__name__)

PODS = lookup("", "v1", "pods")
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PORTFORWARD_CHANNEL_PROTOCOL = "v4.channel.k8s.io"
PORTFORWARD_TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
#: how long output may still drain after the command exited (a background child holding the pipe)
DRAIN_SECONDS = 2.0
#: how long a TTY command waits for the client's terminal size before it starts anyway
TTY_SIZE_WAIT = 1.0
STREAMING_SUBRESOURCES = ("exec", "portforward")


def parse_query(scope: dict) -> dict[str, list[str]]:
    """Every value of every parameter (``command`` repeats)."""
    return parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True)


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return (query.get(name) or [""])[-1].lower() in ("true", "1")


def _success() -> dict:
    return {"metadata": {}, "status": "Success"}


def _exit_status(argv: list[str], code: int) -> dict:
    """The kubelet's ``Status`` for a command that ended with ``code`` != 0."""
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command [{' '.join(argv)}], exit code {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def _internal_status(message: str) -> dict:
    return err.ApiError(500, "InternalError", f"Internal error occurred: {message}").status()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def container_environment(target: RunningContainer) -> tuple[dict[str, str], str]:
    """The environment and working directory of the container's main process (what an
    exec'd command inherits in a real container), falling back to what it was started with."""
    env = dict(target.env)
    try:
        raw = Path(f"/proc/{target.pid}/environ").read_bytes()
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
    except OSError:
        pass
    try:
        cwd = os.readlink(f"/proc/{target.pid}/cwd")
    except OSError:
        cwd = str(target.root)
    return env, cwd


# ---------------------------------------------------------------------------- paths in a root

class OutsideRoot(Exception):
    """A path that does not exist inside the container's root."""


def resolve_in_root(root: Path, path: str, *, cwd: str = "/", must_exist: bool = True) -> Path:
    """``path`` as the container sees it, mapped into ``root``: ``..`` stops at the root and
    symbolic links (absolute ones relative to the root) are followed inside it, as after a
    ``chroot``; nothing outside ``root`` is ever reached."""
    root = root.resolve()
    parts = [p for p in (path if path.startswith("/") else f"{cwd}/{path}").split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise OutsideRoot(f"{path}: Too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    out = root.joinpath(*resolved)
    if must_exist and not out.exists():
        raise OutsideRoot(f"{path}: Cannot stat: No such file or directory")
    return out


class RootedTools:
    """The commands ``kubectl cp`` sends, answered inside the container's root:
    ``test -d PATH``, ``tar cf - PATH`` and ``tar [--no-same-permissions --no-same-owner] -xmf - [-C DIR]``."""

    def __init__(self, root: Path, cwd_in_root: str = "/") -> None:
        self.root = root
        self.cwd = cwd_in_root

    def handles(self, argv: list[str]) -> bool:
        if argv[:2] == ["test", "-d"] and len(argv) == 3:
            return True
        if argv[:3] == ["tar", "cf", "-"] and len(argv) == 4:
            return True
        flags = [a for a in argv[1:] if a not in ("--no-same-permissions", "--no-same-owner")]
        return argv[:1] == ["tar"] and flags[:2] == ["-xmf", "-"] and (len(flags) == 2 or (len(flags) == 4 and flags[2] == "-C"))

    def run(self, argv: list[str], stdin: BinaryIO, stdout: BinaryIO) -> tuple[int, bytes]:
        """``(exit code, stderr)`` as GNU tar and coreutils ``test`` would give them; the
        archive is read from ``stdin`` or written to ``stdout`` (files: models are large)."""
        if argv[0] == "test":
            try:
                return (0 if resolve_in_root(self.root, argv[2], cwd=self.cwd).is_dir() else 1), b""
            except OutsideRoot:
                return 1, b""
        if argv[1] == "cf":
            return self._create(argv[3], stdout)
        flags = [a for a in argv[1:] if a not in ("--no-same-permissions", "--no-same-owner")]
        return self._extract(stdin, flags[3] if len(flags) == 4 else ".")

    def _create(self, path: str, out: BinaryIO) -> tuple[int, bytes]:
        stderr = b""
        name = path
        if path.startswith("/"):
            stderr += b"tar: Removing leading `/' from member names\n"
            name = path.lstrip("/")
        try:
            source = resolve_in_root(self.root, path, cwd=self.cwd)
        except OutsideRoot as exc:
            return 2, stderr + f"tar: {exc}\ntar: Exiting with failure status due to previous errors\n".encode()
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar:
            tar.add(str(source), arcname=name or ".", recursive=True,
                    filter=lambda info: None if info.isdev() or info.isfifo() else info)
        return 0, stderr

    def _extract(self, data: BinaryIO, directory: str) -> tuple[int, bytes]:
        try:
            dest = resolve_in_root(self.root, directory, cwd=self.cwd)
        except OutsideRoot:
            return 2, f"tar: {directory}: Cannot open: No such file or directory\ntar: Error is not recoverable: exiting now\n".encode()
        if not dest.is_dir():
            return 2, f"tar: {directory}: Cannot open: Not a directory\ntar: Error is not recoverable: exiting now\n".encode()
        errors = b""
        try:
            with tarfile.open(fileobj=data, mode="r|") as tar:
                for member in tar:
                    try:
                        # the data filter refuses absolute names, "..", links that leave the
                        # destination, devices and setuid bits (PEP 706)
                        member = tarfile.data_filter(member, str(dest))
                        target = resolve_in_root(self.root, str(Path(directory) / member.name), cwd=self.cwd,
                                                 must_exist=False)
                        target.resolve().relative_to(self.root.resolve())
                    except (tarfile.FilterError, OutsideRoot, ValueError) as exc:
                        errors += f"tar: {member.name}: {exc}\n".encode()
                        continue
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif member.isfile():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        src = tar.extractfile(member)
                        with open(target, "wb") as fh:
                            if src is not None:
                                shutil.copyfileobj(src, fh)
                        os.chmod(target, member.mode & 0o777)
                    elif member.issym():
                        if target.is_symlink() or target.exists():
                            target.unlink()
                        os.symlink(member.linkname, target)
                    else:
                        errors += f"tar: {member.name}: unsupported member type\n".encode()
        except tarfile.TarError as exc:
            return 2, f"tar: This does not look like a tar archive ({exc})\ntar: Exiting with failure status due to previous errors\n".encode()
        if errors:
            return 2, errors + b"tar: Exiting with failure status due to previous errors\n"
        return 0, b""


# ---------------------------------------------------------------------------- the endpoints

class Streaming:
    """The connect subresources of pods, for :class:`~aml_emulator.cluster.api.ClusterAPI`."""

    def __init__(self, api: ClusterAPI, containers: Callable[[str, str, str], RunningContainer | None] | None) -> None:
        self.api = api
        self.containers = containers
        self._children: set[int] = set()  # process groups of running exec'd commands
        self._keepers: set[asyncio.Task] = set()

    def shutdown(self) -> None:
        """Kill every command still running from an exec (the cluster is stopping)."""
        for pgid in list(self._children):
            _kill_group(pgid)

    async def _outlive_not_the_container(self, pgid: int, target: RunningContainer) -> None:
        try:
            while _group_exists(pgid) and _alive(target.pid):
                await asyncio.sleep(0.5)
        finally:
            _kill_group(pgid)
            self._children.discard(pgid)

    # -- checks the apiserver makes before any upgrade ---------------------------------

    def _pod_and_container(self, ns: str, name: str, query: dict[str, list[str]], sub: str) -> tuple[dict, str]:
        pod = self.api.store.get(PODS, ns, name)
        if sub == "portforward":
            return pod, ""
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = (query.get("container") or [""])[-1]
        if not container:
            if len(containers) != 1:
                raise err.bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]")
            container = containers[0]
        elif container not in containers:
            raise err.bad_request(f"container {container} is not valid for pod {name}")
        if not query.get("command") or not any(query["command"]):
            raise err.bad_request("you must specify at least 1 command")
        if not any(_flag(query, s) for s in ("stdin", "stdout", "stderr")):
            raise err.bad_request("you must specify at least 1 of stdin, stdout, stderr")
        if not pod["spec"].get("nodeName"):
            raise err.bad_request(f"pod {name} does not have a host assigned")
        return pod, container

    async def http(self, req: Any, send: Callable, ns: str, name: str, sub: str) -> None:
        """A plain HTTP (or SPDY upgrade) request for exec or port-forward: the apiserver's
        checks, then a 400 that names what is served, since only WebSocket is."""
        query = parse_qs(req.scope.get("query_string", b"").decode(), keep_blank_values=True)
        self._pod_and_container(ns, name, query, sub)
        upgrade = req.headers.get("upgrade", "")
        protocols = ", ".join(EXEC_PROTOCOLS if sub == "exec" else (PORTFORWARD_TUNNEL_PROTOCOL, PORTFORWARD_CHANNEL_PROTOCOL))
        if upgrade.lower().startswith("spdy"):
            raise err.bad_request(f"unable to upgrade connection: the emulated cluster serves pods/{sub} over "
                                  f"WebSocket only ({protocols}), not {upgrade}; use kubectl 1.30 or newer "
                                  "(WebSocket streaming is its default)")
        raise err.bad_request("Upgrade request required")

    # -- WebSocket entry -----------------------------------------------------------------

    async def websocket(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        from aml_emulator.cluster.api import Request

        first = await receive()
        if first["type"] != "websocket.connect":
            return
        req = Request(dict(scope, method="GET"), receive)
        try:
            req.user = self.api._authenticate(req)
            if req.user is None:
                raise err.unauthorized()
            self.api._impersonate(req)
            segs = req.path.strip("/").split("/")
            if len(segs) != 7 or segs[:3] != ["api", "v1", "namespaces"] or segs[4] != "pods":
                raise err.path_not_found(req.path)
            if segs[6] not in STREAMING_SUBRESOURCES:  # pods/attach: named, as over plain HTTP
                raise err.not_implemented(f"pods/{segs[6]}") if segs[6] == "attach" else err.path_not_found(req.path)
            ns, name, sub = segs[3], segs[5], segs[6]
            # as the 1.32 apiserver: a WebSocket GET on a connect subresource is the "get" verb
            self.api._authorize(req, PODS, "get", ns, name, sub)
            query = parse_query(scope)
            pod, container = self._pod_and_container(ns, name, query, sub)
            offered = list(scope.get("subprotocols") or [])
            if sub == "exec":
                protocol = next((p for p in EXEC_PROTOCOLS if p in offered), None)
            else:
                protocol = next((p for p in (PORTFORWARD_TUNNEL_PROTOCOL, PORTFORWARD_CHANNEL_PROTOCOL) if p in offered), None)
            if protocol is None:
                raise err.bad_request(f"unable to upgrade connection: none of the requested sub-protocols {offered} "
                                      f"is served for pods/{sub}")
        except err.ApiError as e:
            return await self._deny(send, e)
        await send({"type": "websocket.accept", "subprotocol": protocol})
        channel = _Channel(send)
        try:
            if sub == "exec":
                await self._exec(channel, receive, pod, container, query)
            elif protocol == PORTFORWARD_TUNNEL_PROTOCOL:
                await _SpdyPortForward(self, channel, receive, pod).run()
            else:
                await self._portforward_channels(channel, receive, pod, query)
        finally:
            await channel.close()

    @staticmethod
    async def _deny(send: Callable, e: err.ApiError) -> None:
        body = json.dumps(e.status()).encode()
        await send({"type": "websocket.http.response.start", "status": e.code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body})

    def _target(self, pod: dict, container: str) -> RunningContainer | None:
        if self.containers is None:
            return None
        m = pod["metadata"]
        target = self.containers(m["namespace"], m["name"], container)
        return target if target is not None and _alive(target.pid) else None

    # -- exec ------------------------------------------------------------------------------

    async def _exec(self, channel: _Channel, receive: Callable, pod: dict, container: str,
                    query: dict[str, list[str]]) -> None:
        argv = query["command"]
        tty = _flag(query, "tty")
        use_stdin = _flag(query, "stdin")
        target = self._target(pod, container)
        if target is None:
            await channel.send(ERROR, json.dumps(_internal_status(
                f'unable to upgrade connection: container not found ("{container}")')).encode())
            return
        env, cwd = container_environment(target)
        tools = RootedTools(target.root, _inside(target.root, cwd))
        if tools.handles(argv):
            code = await self._exec_rooted(channel, receive, tools, argv, use_stdin)
        else:
            code = await self._exec_process(channel, receive, argv, env, cwd, tty, use_stdin, target)
        if code is None:
            return  # the client went away
        await channel.send(ERROR, json.dumps(_success() if code == 0 else _exit_status(argv, code)).encode())

    async def _exec_rooted(self, channel: _Channel, receive: Callable, tools: RootedTools, argv: list[str],
                           use_stdin: bool) -> int | None:
        # spooled to disk both ways: a model directory may not fit in memory
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout:
            if use_stdin and argv[0] == "tar" and argv[1] != "cf":
                while True:
                    msg = await receive()
                    if msg["type"] == "websocket.disconnect":
                        return None
                    payload = msg.get("bytes") or (msg.get("text") or "").encode()
                    if not payload:
                        continue
                    if payload[0] == STDIN:
                        stdin.write(payload[1:])
                    elif payload[0] == CLOSE and payload[1:2] == bytes([STDIN]):
                        break
                stdin.seek(0)
            code, errout = await asyncio.get_running_loop().run_in_executor(None, tools.run, argv, stdin, stdout)
            stdout.seek(0)
            while chunk := stdout.read(1 << 20):
                await channel.send(STDOUT, chunk)
        if errout:
            await channel.send(STDERR, errout)
        return code

    async def _exec_process(self, channel: _Channel, receive: Callable, argv: list[str], env: dict[str, str],
                            cwd: str, tty: bool, use_stdin: bool, target: RunningContainer) -> int | None:
        loop = asyncio.get_running_loop()
        master = None
        early: list[dict] = []
        if tty:
            # the terminal gets the client's size before the command starts (kubectl sends it
            # first thing); what else arrives meanwhile is replayed once the command runs
            early = await _until_resize(receive, TTY_SIZE_WAIT)
        try:
            if tty:
                master, slave = pty.openpty()
                for msg in early:
                    payload = msg.get("bytes") or b""
                    if payload[:1] == bytes([RESIZE]):
                        _resize(slave, payload[1:])
                env = {"TERM": "xterm"} | env
                proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                                        start_new_session=True, preexec_fn=_take_terminal)
                os.close(slave)
                outputs = {master: STDOUT}
                stdin_fd: int | None = master
            else:
                proc = subprocess.Popen(argv, env=env, cwd=cwd,
                                        stdin=subprocess.PIPE if use_stdin else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
                outputs = {proc.stdout.fileno(): STDOUT, proc.stderr.fileno(): STDERR}
                stdin_fd = proc.stdin.fileno() if proc.stdin else None
        except OSError as exc:
            if master is not None:
                os.close(master)
            # what runc reports for a command it cannot start, as kubectl shows it
            why = ("executable file not found in $PATH" if isinstance(exc, FileNotFoundError) and "/" not in argv[0]
                   else (exc.strerror or str(exc)).lower())
            await channel.send(ERROR, json.dumps(_internal_status(
                f'error executing command in container: failed to exec in container: OCI runtime exec failed: '
                f'exec failed: unable to start container process: exec: "{argv[0]}": {why}: unknown')).encode())
            return None
        self._children.add(proc.pid)
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        open_fds = set(outputs)

        def readable(fd: int) -> None:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO from a pty master once the terminal is gone
                chunk = b""
            if chunk:
                queue.put_nowait((outputs[fd], chunk))
                return
            loop.remove_reader(fd)
            open_fds.discard(fd)
            if not open_fds:
                queue.put_nowait(None)

        for fd in outputs:
            os.set_blocking(fd, False)
            loop.add_reader(fd, readable, fd)
        if stdin_fd is not None and tty:
            os.set_blocking(stdin_fd, False)

        client_gone = asyncio.Event()

        async def pump_input() -> None:
            while True:
                msg = early.pop(0) if early else await receive()
                if msg["type"] == "websocket.disconnect":
                    client_gone.set()
                    queue.put_nowait(None)
                    return
                payload = msg.get("bytes") or (msg.get("text") or "").encode()
                if not payload:
                    continue
                ch, data = payload[0], payload[1:]
                if ch == STDIN and stdin_fd is not None and data:
                    await _write_all(loop, stdin_fd, data, tty)
                elif ch == RESIZE and master is not None:
                    _resize(master, data)
                elif ch == CLOSE and data[:1] == bytes([STDIN]) and proc.stdin is not None and not tty:
                    proc.stdin.close()

        async def watch_container() -> None:
            # the command ends with its container, as in a real one
            while _alive(target.pid):
                await asyncio.sleep(0.5)
            _kill_group(proc.pid)

        inputs = asyncio.create_task(pump_input())
        watcher = asyncio.create_task(watch_container())
        exited = loop.run_in_executor(None, proc.wait)
        drain_until: float | None = None
        try:
            while True:
                if exited.done():
                    # output still buffered is drained; a background child holding the pipe is not waited for
                    drain_until = drain_until or loop.time() + DRAIN_SECONDS
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout=max(0.0, drain_until - loop.time()))
                    except TimeoutError:
                        break
                else:
                    getting = asyncio.ensure_future(queue.get())
                    await asyncio.wait([getting, exited], return_when=asyncio.FIRST_COMPLETED)
                    if not getting.done():
                        getting.cancel()
                        continue
                    item = getting.result()
                if item is None:
                    break
                await channel.send(*item)
            code = await exited if not client_gone.is_set() else None
        finally:
            if client_gone.is_set() or not exited.done():
                _kill_group(proc.pid)
            for fd in list(open_fds):
                loop.remove_reader(fd)
            inputs.cancel()
            watcher.cancel()
            await exited
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
            if master is not None:
                os.close(master)
            if _group_exists(proc.pid):
                # what the command left running in the background lives on, as in a real
                # container, until the container stops
                task = asyncio.create_task(self._outlive_not_the_container(proc.pid, target))
                self._keepers.add(task)
                task.add_done_callback(self._keepers.discard)
            else:
                self._children.discard(proc.pid)
        if code is None or client_gone.is_set():
            return None
        return code if code >= 0 else 128 - code

    # -- port-forward, channel protocol (Python client) --------------------------------

    async def _portforward_channels(self, channel: _Channel, receive: Callable, pod: dict,
                                    query: dict[str, list[str]]) -> None:
        ports: list[int] = []
        for value in query.get("ports") or []:
            for p in value.split(","):
                try:
                    ports.append(int(p))
                except ValueError:
                    await channel.send(ERROR, f'invalid port value "{p}"'.encode())
                    return
        if not ports:
            # what the kubelet answers (the apiserver lets it through)
            await channel.send(1, b'query parameter "port" is required')
            return
        writers: dict[int, asyncio.StreamWriter] = {}
        readers: list[asyncio.Task] = []
        for i, port in enumerate(ports):
            prefix = struct.pack("<H", port)
            await channel.send(2 * i, prefix)
            await channel.send(2 * i + 1, prefix)
            try:
                reader, writer = await self._connect(pod, port)
            except OSError as exc:
                await channel.send(2 * i + 1, self._forward_error(pod, port, exc).encode())
                continue
            writers[2 * i] = writer

            async def pump(reader: asyncio.StreamReader = reader, ch: int = 2 * i) -> None:
                while chunk := await reader.read(65536):
                    await channel.send(ch, chunk)
            readers.append(asyncio.create_task(pump()))
        if not readers:
            return

        async def from_client() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "websocket.disconnect":
                    return
                payload = msg.get("bytes") or b""
                if len(payload) > 1 and payload[0] in writers:
                    writers[payload[0]].write(payload[1:])
                    await writers[payload[0]].drain()

        client = asyncio.create_task(from_client())
        await asyncio.wait([client, asyncio.gather(*readers)], return_when=asyncio.FIRST_COMPLETED)
        client.cancel()
        for t in readers:
            t.cancel()
        for w in writers.values():
            w.close()

    async def _connect(self, pod: dict, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the pod's ``port`` (a declared containerPort, through the loopback
        port it is mapped to); any other port is closed, as on an empty network namespace."""
        target = None
        for c in (pod.get("spec") or {}).get("containers") or []:
            target = self._target(pod, c.get("name", ""))
            if target is not None:
                break
        host_port = target.ports.get(port) if target is not None else None
        if host_port is None:
            raise ConnectionRefusedError(111, "connect: connection refused")
        return await asyncio.open_connection("127.0.0.1", host_port)

    @staticmethod
    def _forward_error(pod: dict, port: int, exc: OSError) -> str:
        m = pod["metadata"]
        why = "connect: connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
        return (f"error forwarding port {port} to pod {m['namespace']}/{m['name']}, uid {m.get('uid', '')}: "
                f"failed to connect to localhost:{port} inside the pod: dial tcp4 127.0.0.1:{port}: {why}")


class _Channel:
    """Serialised binary messages on one WebSocket (tasks share it)."""

    def __init__(self, send: Callable) -> None:
        self._send = send
        self._lock = asyncio.Lock()
        self.closed = False

    async def send(self, channel: int, data: bytes) -> None:
        await self.raw(bytes([channel]) + data)

    async def raw(self, data: bytes) -> None:
        async with self._lock:
            if self.closed:
                return
            try:
                await self._send({"type": "websocket.send", "bytes": data})
            except Exception:  # the client is gone; its disconnect ends the session
                self.closed = True

    async def close(self) -> None:
        async with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                await self._send({"type": "websocket.close", "code": 1000})
            except Exception:
                pass


class _SpdyPortForward:
    """One kubectl port-forward session: SPDY over the WebSocket, a TCP connection to the
    pod per stream pair (the kubelet's ``httpStreamHandler``)."""

    def __init__(self, streaming: Streaming, channel: _Channel, receive: Callable, pod: dict) -> None:
        self.streaming = streaming
        self.channel = channel
        self.receive = receive
        self.pod = pod
        self.codec = spdy.Codec()
        self.pairs: dict[str, dict[str, int]] = {}  # requestid → {"error": id, "data": id}
        self.ports: dict[int, int] = {}  # stream id → port
        # data stream id → what the client sent on it, until the pod connection takes it
        # (None: reset); queued because frames arrive while the connection is being opened
        self.inbound: dict[int, asyncio.Queue[tuple[bytes, bool] | None]] = {}
        self.tasks: set[asyncio.Task] = set()
        self.last_stream = 0

    async def run(self) -> None:
        try:
            while True:
                msg = await self.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                try:
                    frames = list(self.codec.feed(msg.get("bytes") or b""))
                except spdy.ProtocolError as exc:
                    log.info("port-forward session ended: %s", exc)
                    await self.channel.raw(self.codec.goaway(self.last_stream, 1))
                    return
                for frame in frames:
                    if not await self._on_frame(frame):
                        return
        finally:
            for t in self.tasks:
                t.cancel()
            for q in self.inbound.values():
                q.put_nowait(None)

    async def _on_frame(self, f: spdy.Frame) -> bool:
        if f.kind == spdy.SYN_STREAM:
            self.last_stream = max(self.last_stream, f.stream_id)
            await self.channel.raw(self.codec.syn_reply(f.stream_id))
            kind, request = f.headers.get("streamtype"), f.headers.get("requestid", "")
            try:
                port = int(f.headers.get("port", ""))
            except ValueError:
                await self.channel.raw(self.codec.rst_stream(f.stream_id, spdy.RST_PROTOCOL_ERROR))
                return True
            if kind not in ("error", "data"):
                await self.channel.raw(self.codec.rst_stream(f.stream_id, spdy.RST_REFUSED_STREAM))
                return True
            self.ports[f.stream_id] = port
            if kind == "data":
                self.inbound[f.stream_id] = asyncio.Queue()
            pair = self.pairs.setdefault(request, {})
            pair[kind] = f.stream_id
            if len(pair) == 2:
                task = asyncio.create_task(self._forward(pair["data"], pair["error"], port))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        elif f.kind == 0:
            queue = self.inbound.get(f.stream_id)
            if queue is not None and (f.data or f.fin):
                queue.put_nowait((f.data, f.fin))
        elif f.kind == spdy.RST_STREAM:
            queue = self.inbound.pop(f.stream_id, None)
            if queue is not None:
                queue.put_nowait(None)
        elif f.kind == spdy.PING:
            await self.channel.raw(self.codec.ping(f.status))
        elif f.kind == spdy.GOAWAY:
            return False
        return True

    async def _forward(self, data_id: int, error_id: int, port: int) -> None:
        try:
            reader, writer = await self.streaming._connect(self.pod, port)
        except OSError as exc:
            message = self.streaming._forward_error(self.pod, port, exc).encode()
            await self.channel.raw(self.codec.data(error_id, message, fin=True))
            await self.channel.raw(self.codec.data(data_id, b"", fin=True))
            return
        inbound = self.inbound.get(data_id) or asyncio.Queue()

        async def to_pod() -> None:
            while (item := await inbound.get()) is not None:
                data, fin = item
                if data:
                    writer.write(data)
                    await writer.drain()
                if fin:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
            writer.close()  # the client reset the stream

        sending = asyncio.create_task(to_pod())
        try:
            while chunk := await reader.read(65536):
                await self.channel.raw(self.codec.data(data_id, chunk))
        except OSError:
            pass
        finally:
            await self.channel.raw(self.codec.data(data_id, b"", fin=True))
            await self.channel.raw(self.codec.data(error_id, b"", fin=True))
            try:
                await asyncio.wait_for(sending, timeout=5)
            except (TimeoutError, OSError):
                sending.cancel()
            writer.close()
            self.inbound.pop(data_id, None)


# ---------------------------------------------------------------------------- helpers

def _inside(root: Path, cwd: str) -> str:
    """A host working directory as a path inside ``root`` (``/`` when it is elsewhere)."""
    try:
        rel = Path(cwd).resolve().relative_to(root.resolve())
    except ValueError:
        return "/"
    return "/" + str(rel) if str(rel) != "." else "/"


async def _until_resize(receive: Callable, timeout: float) -> list[dict]:
    """The messages received until the first resize (included), or until ``timeout``."""
    got: list[dict] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await asyncio.wait_for(receive(), timeout=left)
        except TimeoutError:
            break
        got.append(msg)
        if msg["type"] == "websocket.disconnect" or (msg.get("bytes") or b"")[:1] == bytes([RESIZE]):
            break
    return got


def _take_terminal() -> None:  # pragma: no cover - runs in the child
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _resize(fd: int, data: bytes) -> None:
    try:
        size = json.loads(data)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0))
    except (ValueError, KeyError, TypeError, OSError):
        pass  # a malformed resize is ignored, as the kubelet does


async def _write_all(loop: asyncio.AbstractEventLoop, fd: int, data: bytes, nonblocking: bool) -> None:
    if not nonblocking:
        try:
            await loop.run_in_executor(None, _blocking_write, fd, data)
        except OSError:
            pass  # the command closed its stdin
        return
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await asyncio.sleep(0.01)
        except OSError:
            return


def _blocking_write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
