"""Puts ``example_dags/<name>`` of the checkout under test on ``sys.path`` (the docs test sets
``PIPETRACE_DOCS_REPO``)."""

import os
import sys
from pathlib import Path


def use(name: str) -> None:
    folder = Path(os.environ["PIPETRACE_DOCS_REPO"]) / "example_dags" / name
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
