"""Helpers shared by the App Service tests: an emulator (registry + ARM) whose cloud profile is saved."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def emulator_with_profile(profiles: Path, **emulator_kwargs: Any) -> Iterator[Any]:
    """A started emulator with registry and ARM (App Service needs no cluster), its cloud
    profile saved in ``profiles`` with AML_PROFILE_DIR pointing there for the duration
    (restored after). ARM asks for polls every 0.1 s, so operations answer once done."""
    from aml_emulator import Emulator

    saved = os.environ.get("AML_PROFILE_DIR")
    os.environ["AML_PROFILE_DIR"] = str(profiles)
    emulator_kwargs.setdefault("services", ["registry", "arm"])
    emulator_kwargs.setdefault("arm_retry_after", 0.1)
    try:
        with Emulator(**emulator_kwargs) as emu:
            emu.profile().save()
            yield emu
    finally:
        if saved is None:
            os.environ.pop("AML_PROFILE_DIR", None)
        else:
            os.environ["AML_PROFILE_DIR"] = saved
