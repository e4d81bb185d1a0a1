"""An adapter's patches (wrapped methods, secret-returning calls), undone together."""

from __future__ import annotations

from typing import Any

from pipetrace.adapter.patching import Patches, is_wrapped


class _Base:
    def inherited(self) -> str:
        return "base"


class _Api(_Base):
    def own(self) -> str:
        return "own"

    def token(self) -> str:
        return "s3cr3t-token-value"


def _upper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return str(wrapped(*args, **kwargs)).upper()


def test_wrap_own_only_skips_inherited_methods_and_undo_restores_everything() -> None:
    from pipetrace.redaction.known import KNOWN

    patches = Patches("test")
    assert patches.wrap(_Api, "own", _upper, own_only=True)
    assert not patches.wrap(_Api, "inherited", _upper, own_only=True)  # _Base defines it: left alone
    assert not patches.wrap(_Api, "own", _upper)  # already wrapped: once
    patches.secrets(_Api, "token")
    api = _Api()
    assert (api.own(), api.inherited()) == ("OWN", "base")
    assert api.token() == "s3cr3t-token-value"
    assert KNOWN.source("s3cr3t-token-value") == "test"  # a known secret, from this adapter
    patches.undo()
    assert not is_wrapped(_Api, "own") and "own" in vars(_Api) and api.own() == "own"
    assert not hasattr(_Api.token, "__wrapped__")  # the original method again
    patches.undo()  # idempotent
