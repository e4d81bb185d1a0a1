"""All examples in one code location, for ``dagster dev -f definitions.py``.

``traced(defs)`` is the one-line alternative to ``pipetrace run -- dagster dev``: every process that
loads this code location (code server, run worker, step subprocesses) is instrumented.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dagster import Definitions

sys.path.insert(0, str(Path(__file__).resolve().parent))

import assets  # noqa: E402
import dynamic  # noqa: E402
import fan_in  # noqa: E402
import retry  # noqa: E402
from pipetrace.integrations.dagster import traced  # noqa: E402

defs = traced(Definitions.merge(assets.defs, fan_in.defs, dynamic.defs, retry.defs))
