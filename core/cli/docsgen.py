"""Generated documentation: the configuration reference comes from the code, so it cannot drift."""

from __future__ import annotations

from ..config import describe


def configuration_reference() -> str:
    lines = [
        "# Configuration reference", "",
        "Generated from `pipetrace.config.describe()` by `python -m pipetrace.cli.docsgen > docs/configuration.md`;",
        "a test fails when this file and the code disagree.", "",
        "Set by environment variable or `pipetrace.configure(setting=value)`; keyword overrides win.", "",
        "| setting | environment variable(s) | default | meaning |", "| --- | --- | --- | --- |",
    ]
    for name, env, default, desc in describe():
        names = " / ".join(f"`{e}`" for e in env.split(" / ")) if env else ""
        lines.append(f"| `{name}` | {names} | `{default}` | {desc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(configuration_reference())
