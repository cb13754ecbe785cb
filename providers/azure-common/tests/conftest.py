import pytest


class HandClock:
    """A seconds clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock():
    return HandClock()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory, clock):
    """Registry and ARM only (no cluster): one per module, scripts cleared after each test."""
    from aml_emulator import Emulator

    with Emulator(tmp_path_factory.mktemp("emulator"), services=["registry", "arm"], clock=clock,
                  arm_retry_after=0.05) as emu:
        emu.arm.add_kubernetes(lambda: "apiVersion: v1\nkind: Config\n")
        yield emu


@pytest.fixture
def profile(emulator):
    yield emulator.profile()
    emulator.arm.clear_operation_scripts()
