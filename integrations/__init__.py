"""Thin adapters: each translates one orchestrator's events into pipetrace core calls."""
