"""Settings: defaults ← instance config file ← CRM_* environment ← test overrides."""
import os
import stat

import pytest

from crm import config


def test_first_run_writes_a_private_config_with_random_secrets(tmp_path):
    """Each instance gets its own random keys in a file only its owner can read."""
    a = config.load(tmp_path / "a")
    b = config.load(tmp_path / "b")
    assert a["SECRET_KEY"] != b["SECRET_KEY"] and len(a["SECRET_KEY"]) == 64
    assert a["LEDGER_KEY"] != a["SECRET_KEY"]
    mode = stat.S_IMODE(os.stat(tmp_path / "a" / "config.toml").st_mode)
    assert mode == 0o600
    # A second start keeps the keys it wrote the first time.
    assert config.load(tmp_path / "a")["SECRET_KEY"] == a["SECRET_KEY"]
    assert a["DATABASE_URL"] == f"sqlite:///{tmp_path / 'a' / 'crm.db'}"
    assert a["PORT"] == 8000 and a["HOST"] == "0.0.0.0"


def test_file_then_environment_then_overrides(tmp_path, monkeypatch):
    """The config file beats the defaults; CRM_* beats the file; explicit overrides beat all."""
    folder = tmp_path / "home"
    config.ensure_config_file(folder)
    path = folder / "config.toml"
    path.write_text(path.read_text(encoding="utf-8").replace("PORT = 8000", "PORT = 8100")
                    .replace('SHOP_NAME = "我的小店"', 'SHOP_NAME = "好味面包"'), encoding="utf-8")
    settings = config.load(folder)
    assert settings["PORT"] == 8100 and settings["SHOP_NAME"] == "好味面包"
    monkeypatch.setenv("CRM_PORT", "8200")
    monkeypatch.setenv("CRM_OPEN_BROWSER", "false")
    monkeypatch.setenv("CRM_DATABASE_URL", "mysql://u:p@db:3306/crm")
    settings = config.load(folder)
    assert settings["PORT"] == 8200 and settings["OPEN_BROWSER"] is False
    assert settings["DATABASE_URL"] == "mysql://u:p@db:3306/crm"
    assert config.load(folder, {"PORT": 9000})["PORT"] == 9000


def test_crm_home_chooses_the_instance_folder(tmp_path, monkeypatch):
    """CRM_HOME moves the instance folder; without it, ./instance beside crm.py."""
    monkeypatch.setenv("CRM_HOME", str(tmp_path))
    assert config.instance_path() == tmp_path
    monkeypatch.delenv("CRM_HOME")
    assert config.instance_path() == config.PROJECT_ROOT / "instance"


def test_missing_secret_is_refused(tmp_path):
    """A config file without its keys stops the start with a clear reason."""
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "config.toml").write_text('SHOP_NAME = "x"\n', encoding="utf-8")
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        config.load(folder)
