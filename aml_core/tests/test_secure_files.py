"""``write_private`` replaces a file atomically, mode 0600, even when threads race on it."""

from __future__ import annotations

import stat
import threading

from aml_core.secure_files import write_private


def test_the_file_is_private_from_creation(tmp_path):
    target = tmp_path / "secret.json"
    write_private(target, b"{}")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"{}"


def test_threads_replacing_one_file_at_once_do_not_trip_over_each_other(tmp_path):
    # the emulator's cluster store is saved by its background saver and by explicit calls;
    # with one temporary name per process, one thread's rename took the other's file away
    target = tmp_path / "state.json"
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(n: int) -> None:
        start.wait()
        for i in range(200):
            try:
                write_private(target, f"{n}:{i}".encode(), fsync=False)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                return

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_text().split(":")[1] == "199"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left behind
