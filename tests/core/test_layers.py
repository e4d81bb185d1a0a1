"""The OpenTelemetry SDK's private names appear only in the span machinery (``pipetrace.machinery``).

Why: pyproject.toml accepts a range of SDK releases and CI tests both ends (the sdkmin and core envs);
that only holds if a private name an SDK release may move is named in one small package. import-linter
checks the arrows between pipetrace's own layers (``lint-imports``, the contracts in pyproject.toml); it
cannot see attribute names, so this test reads the source.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MACHINERY = ROOT / "core" / "machinery"

PRIVATE_ATTRIBUTES = frozenset({
    "_Span", "_span_processors", "_active_span_processor", "_span_limits", "_instrumentation_scope",
    "_update_resource", "_tracers", "_tracers_lock", "_tracer_metrics", "_is_enabled", "_tracer_config", "_dict",
    "_SUPPRESS_INSTRUMENTATION_KEY", "_real_tracer", "_TRACER_PROVIDER", "_RUNTIME_CONTEXT", "_decision",
    "_root", "_remote_parent_sampled", "_local_parent_sampled",
})
"""SDK/API internals pipetrace uses (machinery/record.py, handle.py, sdk.py), as attribute or imported names."""


INCUBATING = "opentelemetry.semconv._incubating"
"""Not an SDK internal: where opentelemetry-semantic-conventions publishes the conventions still in
development (CICD, messaging); pipetrace.attributes takes those names from it."""


def _sources() -> list[Path]:
    files = [*(ROOT / "core").rglob("*.py"), *(ROOT / "integrations").rglob("*.py")]
    return sorted(p for p in files if MACHINERY not in p.parents)


def _private_otel(path: Path, root: Path = ROOT) -> list[str]:
    """Private OpenTelemetry names ``path`` uses: a private module or name imported from ``opentelemetry``,
    or a known SDK-internal attribute read or written (``provider._active_span_processor``…)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("opentelemetry") and not (
                node.module or "").startswith(INCUBATING):
            module_private = any(part.startswith("_") for part in (node.module or "").split("."))
            names = [a.name for a in node.names if a.name.startswith("_")]
            if module_private or names:
                found.append(f"{path.relative_to(root)}:{node.lineno} from {node.module} import …")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("opentelemetry") and re.search(r"\._", alias.name):
                    found.append(f"{path.relative_to(root)}:{node.lineno} import {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            found.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node.value in PRIVATE_ATTRIBUTES):  # getattr(provider, "_span_limits")
            found.append(f"{path.relative_to(root)}:{node.lineno} '{node.value}'")
    return found


def test_private_sdk_names_only_in_the_span_machinery() -> None:
    found = [hit for path in _sources() for hit in _private_otel(path)]
    assert found == [], "private OpenTelemetry names outside pipetrace.machinery:\n" + "\n".join(found)


@pytest.mark.parametrize("source", [
    "provider._active_span_processor._span_processors = ()",
    "limits = getattr(provider, '_span_limits', None)",
    "from opentelemetry.sdk.trace import _Span",
    "from opentelemetry.util._importlib_metadata import entry_points",
])
def test_the_check_finds_each_kind_of_reach(tmp_path: Path, source: str) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source + "\n")
    assert _private_otel(path, tmp_path), source


PUBLIC_FOR_ADAPTERS = ("pipetrace", "pipetrace.spans", "pipetrace.carriers", "pipetrace.identity",
                       "pipetrace.attributes", "pipetrace.adapter", "pipetrace.util", "pipetrace.integrations")
"""What an adapter may import of pipetrace: the public API, the adapter API, the leaf utilities, other adapters."""


def _adapter_reaches() -> list[str]:
    """Imports of pipetrace in integrations/ beyond :data:`PUBLIC_FOR_ADAPTERS` (import-linter cannot see
    integrations/: it is its own source folder mapped into the package)."""
    found = []
    for path in sorted((ROOT / "integrations").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for module in modules:
                allowed = any(module == ok or (ok != "pipetrace" and module.startswith(ok + "."))
                              for ok in PUBLIC_FOR_ADAPTERS)
                if module.split(".")[0] == "pipetrace" and not allowed:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {module}")
    return found


def test_adapters_import_only_the_public_and_adapter_apis() -> None:
    found = _adapter_reaches()
    assert found == [], "adapters reach below the adapter API:\n" + "\n".join(found)
