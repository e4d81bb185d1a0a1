"""One body for an orchestrator method that exists twice, sync and async, and differs only in awaiting
its client calls (Prefect's ``start_span`` / ``async_start_span``).

The body is a generator that yields each call it needs (a zero-argument callable) and is sent its
result, or thrown the exception it raised; what the generator returns is the method's result.
:func:`drive` runs the body calling, :func:`adrive` awaiting: the logic is written once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Steps = Generator[Callable[[], Any], Any, T]


class _Return(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


def _resume(steps: Steps[T], value: Any, error: BaseException | None) -> Callable[[], Any] | _Return[T]:
    """The body's next call, or what it returned; an exception the body itself raises propagates."""
    try:
        return steps.throw(error) if error is not None else steps.send(value)
    except StopIteration as stop:
        return _Return(stop.value)


def drive(steps: Steps[T]) -> T:
    """Run ``steps`` with each yielded call made synchronously."""
    step = _resume(steps, None, None)
    while not isinstance(step, _Return):
        value: Any = None
        error: BaseException | None = None
        try:
            value = step()
        except Exception as exc:
            error = exc
        step = _resume(steps, value, error)
    return step.value


async def adrive(steps: Generator[Callable[[], Awaitable[Any]], Any, T]) -> T:
    """Run ``steps`` with each yielded call awaited."""
    step = _resume(steps, None, None)
    while not isinstance(step, _Return):
        outcome: tuple[Any, BaseException | None]
        try:
            outcome = (await step(), None)
        except Exception as exc:
            outcome = (None, exc)
        step = _resume(steps, *outcome)
    return step.value


__all__ = ["Steps", "adrive", "drive"]
