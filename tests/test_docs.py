"""The README documents every CLI command and API route (a missing one fails the build)."""
import re
from pathlib import Path

import pytest

from crm.cli import COMMANDS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_cli_command_in_readme(command):
    """Each `crm` command has a row in the README."""
    assert f"`crm {command}" in README


@pytest.mark.backends("sqlite")
def test_api_routes_in_readme(app):
    """Each /api/v1 route and method is in the README's API table."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert f"`{method} {path}" in README or re.search(
                rf"`(?:[A-Z/]+/)?{method}(?:/[A-Z]+)* {re.escape(path)}", README), (method, path)
