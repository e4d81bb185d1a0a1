"""Dagster ``EnvVar``: a value resolved from an environment variable for a resource or config field
(``EnvVar("X")``, ``{"env": "X"}``) is a known secret for pipetrace, masked in every span from then on."""

from __future__ import annotations


def install() -> bool:
    from dagster._config import field_utils, source
    from pipetrace.adapter import register_results

    resolved = register_results(source, "_ensure_env_variable", "dagster")  # config {"env": ...} and EnvVar
    direct = register_results(field_utils.EnvVar, "get_value", "dagster")  # EnvVar("X").get_value()
    return resolved or direct


def remove() -> None:
    from dagster._config import field_utils, source
    from pipetrace.adapter import unregister_results

    unregister_results(source, "_ensure_env_variable")
    unregister_results(field_utils.EnvVar, "get_value")
