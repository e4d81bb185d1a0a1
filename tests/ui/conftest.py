"""Fixtures for the viewer tests: a seeded store, the real ``pipetrace ui`` process, Debian's Chromium.

The store is seeded through the public core API in a subprocess with its own PIPETRACE_HOME, and the
viewer runs as the real CLI command in another process, exactly as a user starts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from viewer_helpers import CHROMIUM, LAUNCH_ARGS, Console, Viewer, seed, start_viewer, stop_viewer


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory, store_backend: str) -> tuple[Path, dict[str, Any]]:
    home = tmp_path_factory.mktemp("pipetrace-home")
    return home, seed(home, "basic")


@pytest.fixture(scope="session")
def viewer(seeded: tuple[Path, dict[str, Any]]) -> Iterator[Viewer]:
    v = start_viewer(seeded[0])
    yield v
    stop_viewer(v)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.console = Console(pg)
    yield pg
    context.close()
