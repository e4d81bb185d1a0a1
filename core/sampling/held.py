"""Held spans and tail decisions: the tables and their SQL live in the store layer (``store/held.py``).

Re-exported here so tail sampling (and existing imports) keep their names.
"""

from __future__ import annotations

from ..store.held import Decision, HeldSpan, HeldStore

__all__ = ["Decision", "HeldSpan", "HeldStore"]
