"""Waiting on ARM long-running operations, with progress messages.

azure-core's pollers run in a background thread; :func:`wait_for` waits in short steps so it
can report each status change (``InProgress``, ``Succeeded`` ...) through ``progress`` and
honour a deadline, then returns the result. A failed operation raises the Azure error
(translate it with :func:`aml_azure_common.arm_errors`); a deadline passed raises
:class:`aml_core.errors.DeploymentTimeout` and leaves the operation running.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from aml_core.errors import DeploymentTimeout

#: seconds between two looks at the poller's status (the poller itself polls ARM)
_STEP = 0.1


def wait_for(poller: Any, *, what: str, progress: Callable[[str], None] | None = None,
             timeout: float | None = None) -> Any:
    """Block until ``poller`` (an azure-core ``LROPoller``) is done and return its result.

    :param what: the operation, for messages (``"Creating container group 'svc'"``).
    :param progress: called with ``"<what>: <status>"`` at the start and at each change.
    :param timeout: seconds to wait at most; ``None``: as long as it takes.
    :raises DeploymentTimeout: not done within ``timeout``.
    :raises azure.core.exceptions.HttpResponseError: the operation failed.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        status = poller.status()
        if progress is not None and status != last:
            progress(f"{what}: {status}")
            last = status
        if poller.done():
            return poller.result()
        if deadline is not None and time.monotonic() >= deadline:
            raise DeploymentTimeout(
                f"{what} did not finish within {timeout:g} s (last status {status}); it continues "
                f"in Azure: look again later, or raise the timeout.")
        poller.wait(_STEP if deadline is None else max(0.0, min(_STEP, deadline - time.monotonic())))
