"""The engine seam: pipetrace's telemetry object takes over the tracer and setting Prefect's own object
already read (looking them up again costs every task run a tracer lookup and a settings read)."""

from __future__ import annotations

from typing import Any


def test_engine_telemetry_reuses_prefects_tracer() -> None:
    from pipetrace.integrations.prefect import hooks
    from pipetrace.integrations.prefect.telemetry import PipetraceRunTelemetry
    from prefect.telemetry.run_telemetry import RunTelemetry

    class Engine:
        _telemetry: Any = RunTelemetry()

    engine = Engine()
    native = engine._telemetry
    hooks._post_init(lambda: None, engine, (), {})
    assert isinstance(engine._telemetry, PipetraceRunTelemetry)
    assert engine._telemetry._tracer is native._tracer
    assert engine._telemetry._enabled == native._enabled
    assert engine._telemetry.engine() is engine
