"""Memory and CPU limits for the processes this machine runs as containers.

A container runtime enforces a memory limit through the kernel (cgroup ``memory.max``): the
container's resident memory cannot pass it, and the kernel's OOM killer ends the container
when it tries (Kubernetes then reports ``OOMKilled``, exit code 137). Without a delegated
cgroup we get the same outcome from a watchdog that sums the resident memory
of process groups (:func:`rss_by_group`), and the owner (the emulator's kubelet, the runtime's supervisor) SIGKILLs
the group once it is over the limit and reports it as an OOM kill. It samples (every kubelet
period, 0.2 s by default), so a fast leak can overshoot for that long; it never stops a
process below the limit.

Why not ``RLIMIT_AS``: it caps *virtual* address space, which counts every reservation
(thread stacks, allocator arenas, a BLAS library's per-thread buffers). A Python scoring
process with numpy reserves several times what it uses, so an address-space cap set to a
container's memory limit stops it from starting at all, and a real leak surfaces as a
``MemoryError`` in ``run()`` rather than the kill a cluster reports.

CPU limits (cgroup ``cpu.max``) need the kernel's scheduler; without a delegated cgroup they
are not enforced, and :func:`cpu_limit_note` says so for the status of what was started.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection

#: the exit status of a container the OOM killer ended (128 + SIGKILL), as Kubernetes reports it
OOM_EXIT_CODE = 137

_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {None: 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "E": 1e18, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity (``"300Mi"``, ``"0.3Gi"``, ``"500m"``, ``2``) as a number."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"quantities must match the regular expression "
                         f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {value!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def rss_by_group(pgids: Collection[int]) -> dict[int, int]:
    """The resident memory, in bytes, of the live processes of each process group in
    ``pgids``, from one pass over ``/proc`` (a group with no process is absent)."""
    wanted = set(pgids)
    totals: dict[int, int] = {}
    if not wanted:
        return totals
    try:
        entries = os.listdir("/proc")
    except OSError:
        return totals
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
            pgid = int(stat[stat.rfind(b")") + 2:].split()[2])
            if pgid not in wanted:
                continue
            with open(f"/proc/{entry}/statm", "rb") as handle:
                totals[pgid] = totals.get(pgid, 0) + int(handle.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):  # it ended meanwhile
            continue
    return totals


def process_rss(pid: int) -> int:
    """The resident memory of one process in bytes (0 once it has ended)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def cpu_limit_note(cpu: float) -> str:
    """Why a CPU limit of ``cpu`` cores is not enforced, for the status of what was started."""
    return (f"the CPU limit ({cpu:g} cores) is not enforced: it needs a delegated cgroup v2 (cpu.max), "
            f"which the emulator does not use; the container may use more")
