"""Helpers shared by the viewer tests: seeding a store, running ``pipetrace ui``, watching the console."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPETRACE_"))}
    env.update(PIPETRACE_HOME=str(home), PIPETRACE_EXPORTERS="store")
    if os.environ.get("PIPETRACE_STORE"):  # the PostgreSQL pass (tests/store_backends.py)
        env["PIPETRACE_STORE"] = os.environ["PIPETRACE_STORE"]
    return env


def seed(home: Path, *kinds: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(HERE / "seed.py"), *kinds], env=env_for(home), check=True,
                         capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def pipetrace_cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipetrace", *args], env=env_for(home), capture_output=True,
                          text=True, timeout=timeout)


@dataclass
class Viewer:
    """A running ``pipetrace ui`` process."""

    url: str
    home: Path
    proc: subprocess.Popen[str]
    stderr: list[str] = field(default_factory=list)


def start_viewer(home: Path, *extra: str) -> Viewer:
    proc = subprocess.Popen([sys.executable, "-m", "pipetrace", "ui", "--port", "0", *extra], env=env_for(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        raise AssertionError(f"pipetrace ui did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return Viewer(url=line.split("serving", 1)[1].strip(), home=home, proc=proc)


def stop_viewer(viewer: Viewer) -> None:
    viewer.proc.terminate()
    try:
        viewer.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        viewer.proc.kill()
    for stream in (viewer.proc.stdout, viewer.proc.stderr):
        if stream is not None:
            stream.close()



class Console:
    """Console errors and uncaught page errors of one page: every browser test asserts there are none."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
