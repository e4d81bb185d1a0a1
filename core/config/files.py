"""One reader for pipetrace's own configuration files (alert rules, viewer access): TOML or JSON by suffix,
every problem raised as the caller's own error type with the file named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_config_file(path: Path, error: type[Exception]) -> Any:
    """The parsed document of ``path`` (``.json`` → JSON, anything else → TOML); ``error(message)`` when it
    cannot be read or parsed."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            raise error(f"{path}: TOML needs Python 3.11+; use a .json file") from None
        return tomllib.loads(text)
    except (ValueError, TypeError) as exc:
        raise error(f"{path}: not valid {path.suffix.lstrip('.') or 'toml'}: {exc}") from None
