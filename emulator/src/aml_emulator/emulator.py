"""The ``Emulator`` object: one handle on every emulated service."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any


class Emulator:
    """All emulated services, started together on loopback ephemeral ports.

    :param state_dir: where durable state lives; ``None`` keeps everything in a temporary
        directory removed on :meth:`stop`.
    :param services: which services to start (default: all that are available).
    """

    def __init__(self, state_dir: str | Path | None = None, *, host: str = "127.0.0.1",
                 services: tuple[str, ...] | None = None) -> None:
        self._owns_state = state_dir is None
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="aml-emulator-"))
        self.host = host
        self.wanted = services
        self.services: dict[str, Any] = {}

    def start(self) -> "Emulator":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return self

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()
        self.services.clear()
        if self._owns_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
