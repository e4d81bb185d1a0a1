from pathlib import Path

from pipetrace.cli.docsgen import configuration_reference

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_generated_from_the_code() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == configuration_reference(), (
        "regenerate with: python -m pipetrace.cli.docsgen > docs/configuration.md")


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test-all" in readme and "bash scripts/test-all" in ci
