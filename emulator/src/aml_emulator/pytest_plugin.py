"""Opt-in pytest fixtures for code that talks to the emulator (providers, contract suites).

Enable it in a conftest: ``pytest_plugins = ["aml_emulator.pytest_plugin"]``. Nothing is
started until a test asks for a fixture.

- ``aml_emulator_session``: one :class:`~aml_emulator.Emulator` for the whole session.
- ``aml_emulator``: the same emulator, reset after the test (moto's lesson: state must not
  leak between tests, and resetting belongs in a fixture, not in each test's good manners).
- ``aml_cloud_profile``: the emulator's profile saved in a per-test profile directory with
  ``AML_PROFILE_DIR``/``AML_PROFILE`` pointing at it, so code under test that calls
  ``CloudProfile.load()`` finds it.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from aml_core.profiles import ENV_PROFILE, ENV_PROFILE_DIR, CloudProfile
from aml_emulator.emulator import Emulator


@pytest.fixture(scope="session")
def aml_emulator_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(tmp_path_factory.mktemp("aml-emulator")) as emu:
        yield emu


@pytest.fixture
def aml_emulator(aml_emulator_session: Emulator) -> Iterator[Emulator]:
    yield aml_emulator_session
    aml_emulator_session.reset()


@pytest.fixture
def aml_cloud_profile(aml_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> CloudProfile:
    directory = tmp_path_factory.mktemp("aml-profiles")
    profile = aml_emulator.profile()
    profile.save(directory)
    monkeypatch.setenv(ENV_PROFILE_DIR, str(directory))
    monkeypatch.setenv(ENV_PROFILE, profile.name)
    return profile
