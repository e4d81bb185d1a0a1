"""Every shell command in README.md and the quick starts is executed, so the docs cannot rot.

The conventions (long-running commands, installs, placeholders) are in docs_runner.py and docs/index.md.
README.md's first command (install + ``pipetrace demo --no-browser``) runs once per test session, in the
``readme_demo`` fixture that the demo tests check too.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from docs_runner import (
    EXPECTED_SPANS,
    EXPECTED_SYSTEMS,
    REPO,
    Session,
    _split_comment,
    commands,
    documents,
    quick_starts,
)


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.name)
def test_every_command_of_the_doc_runs(doc: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    blocks = commands(doc)
    assert blocks, f"{doc.name} has no shell block"
    if doc.name == "README.md":  # its first block (the demo) already ran in the readme_demo fixture
        session = request.getfixturevalue("readme_demo").session
        blocks = blocks[1:]
    else:
        session = Session(tmp_path)
    try:
        for block in blocks:
            for cmd in block:
                session.run(cmd)
            session.stop_background()
    finally:
        for _, proc in session.background:  # after a failure: stop what is still running, quietly
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    missing = EXPECTED_SYSTEMS.get(doc.name, set()) - session.stored("system")
    assert not missing, f"{doc.name}: nothing traced for {sorted(missing)}\n{session._tail()}"
    missing = EXPECTED_SPANS.get(doc.name, set()) - session.stored("name")
    assert not missing, f"{doc.name}: no span named {sorted(missing)}\n{session._tail()}"


def test_command_extraction_and_conventions() -> None:
    """The parser sees what a reader sees: comments, quotes, continuation lines and the markers."""
    readme = commands(REPO / "README.md")
    flat = [c for b in readme for c in b]
    assert flat[0].text.startswith("python3 -m venv .venv && .venv/bin/pip install -e")
    assert any(c.long_running and "celery" in c.text for c in flat)
    assert any("scripts/test-all" in c.text for c in flat)
    assert _split_comment('echo "a # b"  # c') == ('echo "a # b"', "c")
    assert {p.name for p in quick_starts()} >= {"airflow.md", "dagster.md", "celery.md", "kombu.md"}
