"""The `crm` command line."""
import subprocess
import sys

import pytest

from crm.models import User
from tests.conftest import PASSWORD


def test_migrate_command_is_idempotent(runner):
    """`crm migrate` on an up-to-date database says so and changes nothing."""
    result = runner.invoke(args=["migrate"])
    assert result.exit_code == 0, result.output
    assert "已是最新" in result.output


def test_create_admin(app, runner):
    """`crm create-admin` makes an admin; a weak password or a taken name fails with a message."""
    result = runner.invoke(args=["create-admin", "--username", "boss", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    with app.app_context(), app.extensions["crm_db"].connection_context():
        assert User.get(User.username == "boss").role == "admin"
    result = runner.invoke(args=["create-admin", "--username", "boss", "--password", PASSWORD])
    assert result.exit_code == 1 and "已被使用" in result.output
    result = runner.invoke(args=["create-admin", "--username", "boss2", "--password", "short"])
    assert result.exit_code == 1 and "至少 8 位" in result.output


@pytest.mark.backends("sqlite")
def test_console_command_on_a_fresh_instance(tmp_path, backend):
    """The installed `crm` command migrates a brand-new instance folder from nothing."""
    env = {"CRM_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "crm.cli"]
    first = subprocess.run([*run, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "0001_initial" in first.stdout
    second = subprocess.run([*run, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert "已是最新" in second.stdout
    config = (tmp_path / "home" / "config.toml").read_text(encoding="utf-8")
    assert 'SECRET_KEY = "' in config and 'LEDGER_KEY = "' in config
    assert (tmp_path / "home" / "crm.db").exists()


def test_help_lists_the_commands(tmp_path):
    """`crm --help` names every command."""
    result = subprocess.run([sys.executable, "-m", "crm.cli", "--help"], capture_output=True,
                            text=True, timeout=60, env={"CRM_HOME": str(tmp_path)})
    for command in ("run", "migrate", "create-admin"):
        assert command in result.stdout


def test_autostart_on_and_off(app, runner, tmp_path, monkeypatch):
    """`crm autostart on` writes a unit that runs the supervised server for this instance;
    `off` removes it."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")  # no systemctl: the command says what to run
    result = runner.invoke(args=["autostart", "on"])
    assert result.exit_code == 0, result.output
    unit = tmp_path / "systemd" / "user" / "shop-crm.service"
    text = unit.read_text(encoding="utf-8")
    assert f"CRM_HOME={app.instance_path}" in text and "crm.py --no-browser" in text
    assert "Restart=always" in text and "systemctl --user enable --now" in result.output
    result = runner.invoke(args=["autostart", "off"])
    assert result.exit_code == 0 and not unit.exists()
