"""Security tests: the known-secrets registry is process-wide, so each test starts and ends with it empty."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pipetrace.redaction import KNOWN


@pytest.fixture(autouse=True)
def _empty_known_secrets() -> Iterator[None]:
    KNOWN.clear()
    yield
    KNOWN.clear()
