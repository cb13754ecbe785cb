import os

import pytest


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """One emulator (registry, ARM, storage, Service Bus) per test module, its profile saved for the providers."""
    from aml_emulator import Emulator

    saved = os.environ.get("AML_PROFILE_DIR")
    os.environ["AML_PROFILE_DIR"] = str(tmp_path_factory.mktemp("profiles"))
    try:
        with Emulator(services=["registry", "arm", "storage", "servicebus"], arm_retry_after=0.1) as emu:
            emu.profile().save()
            yield emu
    finally:
        if saved is None:
            os.environ.pop("AML_PROFILE_DIR", None)
        else:
            os.environ["AML_PROFILE_DIR"] = saved
