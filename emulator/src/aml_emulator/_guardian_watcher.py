"""The watcher process of :class:`aml_emulator.guardian.ProcessGuardian`.

Run as a script (``python -I -S _guardian_watcher.py FD``) so it starts in milliseconds and
imports nothing of the emulator. It reads ``+ PGID`` / ``- PGID`` lines from descriptor FD;
``q`` is an orderly goodbye. End-of-file without ``q`` means the emulator died: every
group still listed gets SIGTERM, then SIGKILL after a short grace.
"""

import os
import signal
import sys
import time

GRACE_SECONDS = 2.0


def _alive(pgid):
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_all(groups, sig):
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def main(fd):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups = set()
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:  # pragma: no cover - retried by Python since 3.5
            continue
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            op, _, number = line.partition(b" ")
            if op == b"q":
                return 0
            if op in (b"+", b"-") and number.isdigit():
                (groups.add if op == b"+" else groups.discard)(int(number))
    _signal_all(groups, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline and any(_alive(g) for g in groups):
        time.sleep(0.05)
    _signal_all(groups, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
