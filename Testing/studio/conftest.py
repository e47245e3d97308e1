"""Fixtures of the studio tests: the real ``ciss-studio`` process, a real headless Chromium, a bundle copy.

Screenshots go to ``test_artifacts/studio/`` (git-ignored) for people to look at; the tests check
their pixels too. Without Chromium (``scripts/install_system_packages.sh`` installs it) the browser
tests are skipped, saying so.
"""
from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from studio_browser import Browser, chromium_path  # noqa: E402
from studio_process import ARTIFACTS, StudioProcess, launch_studio  # noqa: E402


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (scripts/install_system_packages.sh installs Debian's chromium)")
    return path


@pytest.fixture
def browser(chromium: str) -> Iterator[Browser]:
    opened = Browser(chromium)
    yield opened
    opened.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    """Where this test's screenshots go: test_artifacts/studio/<test name>/."""
    return ARTIFACTS / request.node.name


@pytest.fixture
def bundle_copy(painting_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the painting bundle (every organ in every result: the views have organs to draw); a Learn step
    adds versions to it."""
    return Path(shutil.copytree(painting_bundle, tmp_path / "bundle"))


@pytest.fixture
def start_studio(request: pytest.FixtureRequest) -> Iterator[Callable[..., StudioProcess]]:
    """Start ``ciss-studio ARGS`` (``env``: extra environment variables) and stop it after the test (``launch_studio``)."""
    started: list[StudioProcess] = []

    def start(*args: str | Path, env: Mapping[str, str] | None = None) -> StudioProcess:
        studio = launch_studio(f"{request.node.name}_studio{len(started)}", *args, env=env)
        started.append(studio)
        return studio

    yield start
    for studio in started:
        studio.stop()

