"""Put on PYTHONPATH by ``pipetrace run``: activates pipetrace in every Python process of the command."""

try:
    from pipetrace.bootstrap import activate_from_env

    activate_from_env()
except Exception as _exc:  # never stop the user's program from starting
    import sys

    sys.stderr.write(f"pipetrace: auto-instrumentation failed to start: {_exc!r}\n")
