"""The README's fresh-machine command (install + ``pipetrace demo --no-browser``), run once per session:
the docs test runs the README from it on, the demo tests check its output and store."""

from __future__ import annotations

import re

import pytest
from demo_env import REPO, DemoRun
from docs_runner import Session, commands


@pytest.fixture(scope="session")
def readme_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    (first,) = commands(REPO / "README.md")[0]
    assert "pipetrace demo --no-browser" in first.text, "README's first command must run the demo"
    session = Session(tmp_path_factory.mktemp("readme"))
    out = session.run(first)
    session.stop_background()
    found = re.search(r"demo finished in ([\d.]+)s", out)
    assert found, out
    return DemoRun(session, out, float(found.group(1)))

