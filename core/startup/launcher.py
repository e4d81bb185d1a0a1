"""``pipetrace run -- COMMAND``: run a command with pipetrace active in it and in its child processes.

Like ``opentelemetry-instrument``: prepend a directory holding a ``sitecustomize`` to PYTHONPATH and
set ``PIPETRACE_AUTO=1``; every Python process started from there (workers, subprocesses, spawned
executors) activates the installed adapters at start-up.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ..config import ConfigError, load
from .bootstrap import ENV_FLAG

AUTOLOAD_DIR = Path(__file__).resolve().parent / "autoload"


def launch_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    paths = [str(AUTOLOAD_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env[ENV_FLAG] = "1"
    return env


def launch(command: list[str]) -> int:
    """Validate the configuration (clear error at start-up), then exec the command."""
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        sys.stderr.write("usage: pipetrace run -- COMMAND [ARGS...]\n")
        return 2
    try:
        load()
    except ConfigError as exc:
        sys.stderr.write(f"pipetrace: configuration error: {exc}\n")
        return 2
    exe = shutil.which(command[0])
    if exe is None:
        sys.stderr.write(f"pipetrace: command not found: {command[0]}\n")
        return 127
    env = launch_env()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(exe, command, env)
    return 0  # pragma: no cover - exec does not return
