"""Helpers shared by the AKS tests: an emulator with its profile, and polling."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def emulator_with_profile(profiles: Path, **emulator_kwargs: Any) -> Iterator[Any]:
    """A started emulator whose cloud profile is saved in ``profiles`` (AML_PROFILE_DIR is set
    for the duration and restored after), with ARM polled every 0.2 s."""
    from aml_emulator import Emulator

    saved = os.environ.get("AML_PROFILE_DIR")
    os.environ["AML_PROFILE_DIR"] = str(profiles)
    try:
        with Emulator(**emulator_kwargs) as emu:
            profile = emu.profile()
            profile = type(profile).from_dict({**profile.to_dict(),
                                               "extra": {**profile.extra, "arm_polling_interval": 0.2}})
            profile.save()
            yield emu
    finally:
        if saved is None:
            os.environ.pop("AML_PROFILE_DIR", None)
        else:
            os.environ["AML_PROFILE_DIR"] = saved


def wait_until(what: str, check: Callable[[], object], timeout: float = 60.0, interval: float = 0.3) -> object:
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not reached within {timeout:.0f} s (last: {last!r})")
