"""Put on PYTHONPATH by ``pipetrace run``: activates pipetrace in every Python process of the command.

Runs in interpreters that may not have pipetrace installed (a child using another Python): there it
does nothing, silently. A ``sitecustomize`` that this one shadows (distro or venv) still runs.
"""


def _chain_shadowed() -> None:
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        folder = os.path.abspath(entry or os.getcwd())
        candidate = os.path.join(folder, "sitecustomize.py")
        if folder == here or not os.path.isfile(candidate):
            continue
        spec = importlib.util.spec_from_file_location("_pipetrace_shadowed_sitecustomize", candidate)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        return


try:
    _chain_shadowed()
except Exception as _exc:  # someone else's sitecustomize failing is not ours to stop the program for
    import sys

    sys.stderr.write(f"pipetrace: the shadowed sitecustomize failed: {_exc!r}\n")

try:
    from pipetrace.startup.bootstrap import activate_from_env
except ImportError:  # this interpreter has no pipetrace: nothing to activate
    activate_from_env = None

if activate_from_env is not None:
    try:
        activate_from_env()
    except Exception as _exc:  # never stop the user's program from starting
        import sys

        sys.stderr.write(f"pipetrace: auto-instrumentation failed to start: {_exc!r}\n")
