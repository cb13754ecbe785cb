"""Logging for the scoring runtime.

The runtime's own records go to the process's real stderr in the Azure server's format
(``2024-01-01 12:00:00,000 I [pid] aml_core.runtime - message``, UTC). Whatever the user's
script writes to ``sys.stdout`` or ``sys.stderr`` (``print``, a logging handler ...) is
prefixed line by line with the id of the request being scored, or with
:data:`NULL_REQUEST_ID` outside a request (during ``init()``), as the Azure server's stdout
hook does.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import sys
import threading
import time
from typing import TextIO

NULL_REQUEST_ID = "00000000-0000-0000-0000-000000000000"
LOGGER_NAME = "aml_core.runtime"

#: the id of the request whose run() is executing (the worker runs one at a time)
current_request_id = NULL_REQUEST_ID


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime


def setup_logging(stream: TextIO | None = None, level: str | int = "INFO") -> logging.Logger:
    """Send the runtime's logger to ``stream`` (the real stderr by default)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.__stderr__)
    handler.setFormatter(
        _UtcFormatter("%(asctime)s %(levelname).1s [%(process)d] %(name)s - %(message)s")
    )
    logger.addHandler(handler)
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    logger.setLevel(level)
    logger.propagate = False
    return logger


class RequestIdStream(io.TextIOBase):
    """A text stream that prefixes each line with the current request id.

    Writes go straight through to ``target`` (flushed at each newline, so logs survive a kill).
    """

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self._target = target
        self._at_line_start = True

    def write(self, text: str) -> int:  # type: ignore[override]
        if not text:
            return 0
        prefix = f"{current_request_id} | "
        lines = text.split("\n")
        out = []
        for index, line in enumerate(lines):
            last = index == len(lines) - 1
            if line and self._at_line_start:
                out.append(prefix)
            out.append(line)
            if not last:
                out.append("\n")
                self._at_line_start = True
            elif line:
                self._at_line_start = False
        self._target.write("".join(out))
        if "\n" in text:
            self._target.flush()
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", "utf-8")


def prefix_user_output() -> None:
    """Replace ``sys.stdout``/``sys.stderr`` with request-id prefixing streams."""
    if not isinstance(sys.stdout, RequestIdStream):
        sys.stdout = RequestIdStream(sys.__stdout__)
    if not isinstance(sys.stderr, RequestIdStream):
        sys.stderr = RequestIdStream(sys.__stderr__)


class AccessLog:
    """One line per request in the runtime's log format, written off the event loop.

    ``logging`` costs ~100 µs per record (a third of a small model's request), and a write to
    a log file can block for hundreds of milliseconds when the machine is flushing dirty
    pages. So the request path only formats the line and appends it to a deque; a daemon
    thread writes the batch every :data:`FLUSH_INTERVAL` seconds. :meth:`flush` writes what is
    pending (the worker calls it when it stops).
    """

    FLUSH_INTERVAL = 0.05

    def __init__(self, fd: int | None = None, background: bool = True) -> None:
        self._fd = sys.__stderr__.fileno() if fd is None else fd
        self._head = f" I [{os.getpid()}] {LOGGER_NAME} - "
        self._second = -1
        self._stamp = ""
        self._pending: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        if background:
            threading.Thread(target=self._flush_forever, name="aml-access-log", daemon=True).start()

    def write(self, method: str, path: str, status: int, elapsed_ms: float, length: int) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        millis = int((now - second) * 1000)
        self._pending.append(
            f"{self._stamp},{millis:03d}{self._head}{method} {path} {status} "
            f"{elapsed_ms:.3f}ms {length}\n"
        )

    def flush(self) -> None:
        with self._lock:
            parts = []
            pending = self._pending
            while pending:
                parts.append(pending.popleft())  # deque ops are atomic: no line is lost
            if not parts:
                return
            data = "".join(parts).encode("utf-8", "replace")
            try:
                while data:
                    written = os.write(self._fd, data)
                    data = data[written:]
            except OSError:
                pass

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.FLUSH_INTERVAL)
            self.flush()
