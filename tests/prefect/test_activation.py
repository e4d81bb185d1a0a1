"""Zero-edit activation paths, without running a flow: ``pipetrace run --`` (the pipetrace.adapters
entry point), Prefect's plugin hook, and an explicit ``instrument()`` racing the plugin hook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
PROBE = (
    "import prefect, prefect.flow_engine as fe, prefect.task_engine as te\n"
    "import pipetrace.integrations.prefect as p\n"
    "w = fe.BaseFlowRunEngine.__post_init__\n"
    "depth = 0\n"
    "while hasattr(w, '__wrapped__'):\n"
    "    w, depth = w.__wrapped__, depth + 1\n"
    "print(p._installed, depth)\n"
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PIPETRACE_AUTO", "PREFECT_PLUGINS_ENABLED")}
    env.update({"PIPETRACE_HOME": str(tmp_path / "pt"), "PREFECT_HOME": str(tmp_path / "pf")}, **extra)
    return env


def _run(cmd: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    return out.stdout.decode().strip().splitlines()[-1]


def test_pipetrace_run_instruments_prefect_on_import(tmp_path: Path) -> None:
    line = _run([str(BIN / "pipetrace"), "run", "--", sys.executable, "-c", PROBE], _env(tmp_path))
    assert line == "True 1"


def test_prefect_plugin_hook_instruments(tmp_path: Path) -> None:
    line = _run([sys.executable, "-c", PROBE], _env(tmp_path, PREFECT_PLUGINS_ENABLED="1"))
    assert line == "True 1"


def test_explicit_instrument_with_plugin_hook_does_not_deadlock(tmp_path: Path) -> None:
    """instrument() imports prefect, whose plugin hook calls instrument() again: patched once."""
    code = "from pipetrace.integrations.prefect import instrument\nassert instrument()\n" + PROBE
    line = _run([sys.executable, "-c", code], _env(tmp_path, PREFECT_PLUGINS_ENABLED="1"))
    assert line == "True 1"


def test_not_in_the_api_server(tmp_path: Path) -> None:
    code = ("import sys; sys.argv = ['prefect', 'server', 'start']\n"
            "from pipetrace.integrations.prefect import instrument\nprint(instrument())\n")
    assert _run([sys.executable, "-c", code], _env(tmp_path)) == "False"
