"""One body for a method's sync and async twins: the body yields its calls, a driver makes or awaits them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pipetrace.adapter.steps import Steps, adrive, drive


def _body(calls: list[Callable[[], Any]], seen: list[object]) -> Steps[str]:
    """Yields each call; records what it was sent or thrown; returns how many calls succeeded."""
    ok = 0
    for call in calls:
        try:
            seen.append((yield call))
            ok += 1
        except KeyError as exc:
            seen.append(exc)
    return f"{ok} ok"


def _fail() -> Any:
    raise KeyError("nope")


def test_drive_makes_each_call_sends_its_result_and_throws_its_error() -> None:
    seen: list[object] = []
    assert drive(_body([lambda: 1, _fail, lambda: "two"], seen)) == "2 ok"
    assert seen[0] == 1 and isinstance(seen[1], KeyError) and seen[2] == "two"
    assert drive(_body([], [])) == "0 ok"  # a body that calls nothing


def test_adrive_awaits_each_call_with_the_same_body() -> None:
    async def one() -> int:
        return 1

    async def fail() -> Any:
        raise KeyError("nope")

    seen: list[object] = []
    assert asyncio.run(adrive(_body([one, fail, one], seen))) == "2 ok"
    assert seen[0] == 1 and isinstance(seen[1], KeyError) and seen[2] == 1


def test_an_error_the_body_does_not_handle_propagates_from_both_drivers() -> None:
    async def one() -> int:
        return 1

    def body(call: Callable[[], Any]) -> Steps[None]:
        yield call
        raise ValueError("body broke")

    with pytest.raises(ValueError, match="body broke"):
        drive(body(lambda: 1))
    with pytest.raises(ValueError, match="body broke"):
        asyncio.run(adrive(body(one)))

    def unhandled() -> Steps[None]:
        yield _fail  # the call's error is thrown into the body, which does not catch it

    with pytest.raises(KeyError):
        drive(unhandled())
