"""Each orchestrator's part of ``pipetrace demo`` (entry-point group ``pipetrace.demos``).

Demo pipelines are not adapter code: an adapter translates orchestrator events into core calls and nothing
more, so the small pipelines the demo runs live here, one module per orchestrator, each importing its
orchestrator and adapter only when its part runs.
"""
