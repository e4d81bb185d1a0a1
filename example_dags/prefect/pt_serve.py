"""Serve the fan-in example as a deployment (``pt_fan_in/pt-serve``): a long-running process that
executes runs created elsewhere. Traced with no edits via ``pipetrace run --`` or
``PREFECT_PLUGINS_ENABLED=1``; each run continues the trace of whoever created it."""

from __future__ import annotations

from pt_flows import fan_in

if __name__ == "__main__":
    fan_in.serve(name="pt-serve")
