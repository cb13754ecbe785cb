"""Processes the emulator starts never outlive it.

Pods (and anything else the emulator starts: relays, brokers) run in process groups of
their own, so a signal to the emulator's group does not reach them, and nothing reaps them
when the emulator dies. Two mechanisms cover the two ways that can go wrong:

- **A watcher process** (:class:`ProcessGuardian`) holds the read end of a pipe whose write
  end only the emulator holds. The emulator tells it each process group it starts and
  ends; when the pipe reaches end-of-file without an orderly goodbye, the emulator is gone
  (SIGKILL, a crash, the OOM killer) and the watcher ends every group still listed:
  SIGTERM, then SIGKILL after a short grace. End-of-file needs no polling and cannot miss a
  death, unlike ``PR_SET_PDEATHSIG``, which on Linux fires when the *thread* that forked
  the child exits (pods are started from short-lived kubelet threads) and reaches only the
  direct child, not the rest of its group.
- **A record on disk**: the same list, with each group leader's start time, is kept in the
  state directory, so an emulator started again on that state ends whatever a previous run
  left behind (should the watcher have died too) with :func:`end_recorded_survivors`. The
  start time tells a survivor from an unrelated process that reused the id.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from aml_core.secure_files import write_private

log = logging.getLogger("aml_emulator.guardian")

_WATCHER = Path(__file__).with_name("_guardian_watcher.py")


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """``(process group, start time in clock ticks)`` of ``pid`` from ``/proc``, or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2:].split()  # the command name may hold spaces and ')'
    try:
        return int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _processes() -> dict[int, tuple[int, int]]:
    found = {}
    try:
        entries = os.listdir("/proc")
    except OSError:  # not Linux: nothing to scan
        return found
    for entry in entries:
        if entry.isdigit():
            info = _proc_stat(int(entry))
            if info is not None:
                found[int(entry)] = info
    return found


def end_recorded_survivors(record_file: Path) -> list[int]:
    """SIGKILL every process still running in a group ``record_file`` lists, started no
    earlier than that group's leader; returns their pids (logged as a warning).

    A group whose id now belongs to another leader (a live process with that pid, started at
    another time: the id was reused) is left alone, members included."""
    try:
        recorded = json.loads(record_file.read_text()).get("groups") or {}
    except FileNotFoundError:
        return []
    except (ValueError, AttributeError):
        log.warning("%s is not a process record; ignoring it", record_file)
        return []
    groups = {int(pgid): int(start) for pgid, start in recorded.items()}
    if not groups:
        return []
    me = os.getpid()
    running = _processes()
    reused = {pid for pid, (_, started) in running.items() if pid in groups and started != groups[pid]}
    ended = []
    for pid, (pgid, started) in running.items():
        if pid != me and pgid in groups and pgid not in reused and started >= groups[pgid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            ended.append(pid)
    if ended:
        log.warning("ended %d process(es) left running by an emulator that did not stop cleanly: %s",
                    len(ended), ", ".join(map(str, sorted(ended))))
    return ended


class ProcessGuardian:
    """Ends the process groups it is told about if this process dies without :meth:`close`.

    :param record_file: where the list of groups is kept for :func:`end_recorded_survivors`
        (``None``: only the watcher process covers them).

    Thread-safe. The watcher process starts with the first :meth:`watch`.
    """

    def __init__(self, record_file: Path | None = None) -> None:
        self.record_file = record_file
        self._lock = threading.Lock()
        self._groups: dict[int, int] = {}
        self._pipe: int | None = None
        self._watcher: subprocess.Popen | None = None

    @property
    def watcher_pid(self) -> int | None:
        return self._watcher.pid if self._watcher is not None else None

    def watch(self, pgid: int) -> None:
        info = _proc_stat(pgid)
        if info is None:  # already reaped: nothing of it to end, and its id may be reused
            return
        with self._lock:
            self._ensure_watcher()
            self._groups[pgid] = info[1]
            self._send(f"+ {pgid}\n")
            self._save()

    def forget(self, pgid: int) -> None:
        with self._lock:
            if self._groups.pop(pgid, None) is None:
                return
            self._send(f"- {pgid}\n")
            self._save()

    def close(self) -> None:
        """An orderly stop: the owner has ended its children; the watcher leaves them be."""
        with self._lock:
            if self._pipe is not None:
                self._send("q\n")
                os.close(self._pipe)
                self._pipe = None
            if self._watcher is not None:
                try:
                    self._watcher.wait(5)
                except subprocess.TimeoutExpired:  # pragma: no cover - it exits on "q" at once
                    self._watcher.kill()
                    self._watcher.wait()
                self._watcher = None
            self._groups.clear()
            self._save()

    def _ensure_watcher(self) -> None:
        if self._watcher is not None and self._watcher.poll() is None:
            return
        read_end, write_end = os.pipe()  # both not inheritable: pods started later never hold them
        try:
            # its own session: a Ctrl-C to the emulator's terminal must not take it down first
            self._watcher = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_WATCHER), str(read_end)], pass_fds=(read_end,),
                stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        if self._pipe is not None:
            os.close(self._pipe)
        self._pipe = write_end
        for pgid in self._groups:  # a watcher that died is replaced, with the full list
            self._send(f"+ {pgid}\n")

    def _send(self, line: str) -> None:
        if self._pipe is None:
            return
        try:
            os.write(self._pipe, line.encode())
        except BrokenPipeError:  # the watcher died; the next watch() starts another
            log.warning("the process guardian (pid %s) has exited", self.watcher_pid)

    def _save(self) -> None:
        if self.record_file is None:
            return
        data = {"emulator_pid": os.getpid(), "groups": {str(k): v for k, v in self._groups.items()}}
        # no fsync: the record must survive the emulator's death, not the machine's
        write_private(self.record_file, json.dumps(data).encode(), fsync=False)


class GuardedRuntime:
    """A pod runtime whose containers' process groups are watched by a :class:`ProcessGuardian`.

    Delegates everything to ``runtime``; a handle's group is watched from ``start`` until
    ``poll`` reports it ended or ``kill`` returns.
    """

    def __init__(self, runtime: object, guardian: ProcessGuardian) -> None:
        self.runtime = runtime
        self.guardian = guardian

    def start(self, *args, **kwargs):
        handle = self.runtime.start(*args, **kwargs)
        pgid = getattr(handle, "pgid", None)
        if pgid is not None:
            self.guardian.watch(pgid)
        return handle

    def poll(self, handle):
        code = self.runtime.poll(handle)
        if code is not None and getattr(handle, "pgid", None) is not None:
            self.guardian.forget(handle.pgid)
        return code

    def kill(self, handle, grace):
        try:
            self.runtime.kill(handle, grace)
        finally:
            if getattr(handle, "pgid", None) is not None:
                self.guardian.forget(handle.pgid)

    def __getattr__(self, name: str):
        return getattr(self.runtime, name)
