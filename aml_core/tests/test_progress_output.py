"""Progress output of long operations (issue 10, item 7): never wrapped when not on a
terminal, and a quiet step (a long ``init()``) shows its elapsed time."""

from __future__ import annotations

import threading

from aml_core.webservice import HEARTBEAT_S, Operation, _progress_printer


def test_progress_lines_are_not_wrapped_when_not_on_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    uri = "http://127.0.0.1:41234/api/v1/service/" + "a-rather-long-service-name-" * 4 + "/score"
    _progress_printer()(0.0, f"Succeeded: service 'x' is Healthy at {uri}")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and uri in out


def test_a_quiet_step_is_repeated_with_its_elapsed_time():
    release = threading.Event()
    operation = Operation("slow", lambda progress: (progress("Running init() in the entry script"),
                                                    release.wait(30))[1]).start()
    try:
        deadline_for_message = threading.Event()
        for _ in range(300):  # the first message arrives from the worker thread
            if not operation.messages.empty():
                break
            deadline_for_message.wait(0.01)
        [(started, text)] = operation.drain(now=1000.0)
        assert text == "Running init() in the entry script"
        assert operation.drain(now=1000.0 + HEARTBEAT_S - 1) == []
        [(_, beat)] = operation.drain(now=started + 42.0)
        assert beat == "Running init() in the entry script ... still running, 42 s so far"
        assert operation.drain(now=started + 43.0) == []  # not again until the next interval
    finally:
        release.set()
        operation.join(30)
    assert operation.drain(now=started + 100.0) == []  # a finished operation is not "still running"
