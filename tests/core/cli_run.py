"""Running the ``pipetrace`` command as a user does: in a pipe, or in a terminal of a given width (a real
pseudo-terminal, so the command sees a tty exactly as in an interactive shell)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def clean_env(home: Path, **env: str) -> dict[str, str]:
    full = {**os.environ, "PIPETRACE_HOME": str(home), **env}
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "PIPETRACE_EXPORTERS",
                "OTEL_SDK_DISABLED", "PIPETRACE_ENABLED", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        if var not in env:
            full.pop(var, None)
    return full


def piped(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``pipetrace ARGS`` with stdout and stderr captured (not a terminal)."""
    return subprocess.run([sys.executable, "-m", "pipetrace", *args], capture_output=True, text=True,
                          env=clean_env(home, **env), timeout=120)


def in_terminal(*args: str, home: Path, columns: int = 80, **env: str) -> tuple[int, str]:
    """``pipetrace ARGS`` in a pseudo-terminal ``columns`` wide: (exit code, what the screen got, no colours)."""
    main, side = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "pipetrace", *args], stdin=side, stdout=side, stderr=side,
                            env=clean_env(home, COLUMNS=str(columns), TERM="xterm-256color", **env),
                            close_fds=True)
    os.close(side)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError("pipetrace produced no output for 60 s")
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    code = proc.wait(30)
    text = ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r\n", "\n")
    return code, text
