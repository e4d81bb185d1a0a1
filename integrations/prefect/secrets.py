"""Prefect ``Secret`` blocks: every value ``Secret.get()`` returns is a known secret for pipetrace,
masked in every span of the process from then on."""

from __future__ import annotations

from pipetrace.adapter import register_results, unregister_results


def install() -> bool:
    from prefect.blocks.system import Secret

    return register_results(Secret, "get", "prefect")


def remove() -> None:
    from prefect.blocks.system import Secret

    unregister_results(Secret, "get")
