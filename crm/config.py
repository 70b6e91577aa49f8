"""Settings: built-in defaults, then the instance config file, then CRM_* environment variables."""
import os
import secrets
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_NAME = "config.toml"

# Every setting the app reads, with its default. Keys are upper case as Flask expects; the
# config file and the environment use the same names (the environment with a CRM_ prefix).
DEFAULTS = {
    "SHOP_NAME": "我的小店",
    "DATABASE_URL": "",  # empty: sqlite:///<CRM_HOME>/crm.db
    "HOST": "0.0.0.0",
    "PORT": 8000,
    "THREADS": 64,  # waitress worker threads: 50 staff at once, each may hold a request
    "WORKERS": 0,  # server processes on MySQL: 0 = one per core (at most 2); SQLite: always 1
    "OPEN_BROWSER": True,
    "BACKUP_DIR": "",  # empty: <CRM_HOME>/backups
    "BACKUP_COPY_DIR": "",
    "BACKUP_TIME": "02:00",
    "BACKUP_KEEP": "7,4,12",  # daily, weekly, monthly backups kept
    "SCHEDULER": True,  # the built-in nightly backup (benchmarks switch it off)
    "DISK_WARN_MB": 1024,  # warn when the data or backup disk has less free space than this
    "RESTARTS": 0,  # set by the supervisor: how often it restarted the server
    "LOGIN_MAX_FAILURES": 5,
    "LOGIN_LOCK_MINUTES": 15,
    "SESSION_IDLE_MINUTES": 480,
    "API_TOKEN_HOURS": 12,
    "BCRYPT_ROUNDS": 12,
    "MAX_AMOUNT_FEN": 5_000_000,  # per-operation maximum: 50,000.00 yuan
    "CONSUME_ORDER": "paid_first",  # or bonus_first: which part of a card a consumption draws first
    "SETUP_CODE": "",  # empty: a random one-time code printed to the console
    "LOG_LEVEL": "INFO",
    "STATS_CACHE_SECONDS": 30,  # the dashboard's figures are recomputed at most this often
}

# Settings that are made once per instance and must never be shared between shops.
SECRET_KEYS = ("SECRET_KEY", "LEDGER_KEY")

CONFIG_TEMPLATE = """\
# 客户关系管理系统 — instance settings. Written on first run; edit and restart to change.
# Environment variables CRM_<NAME> override what is written here.
# Keep this file private: SECRET_KEY signs logins, LEDGER_KEY seals the money ledger.
# Without LEDGER_KEY the ledger chains of a backup cannot be verified: keep a copy somewhere safe.

SECRET_KEY = "{secret_key}"
LEDGER_KEY = "{ledger_key}"

SHOP_NAME = "我的小店"

# sqlite:///path/to/crm.db (default: crm.db in this folder) or mysql://user:pass@host:3306/dbname
DATABASE_URL = ""

HOST = "0.0.0.0"
PORT = 8000

BACKUP_DIR = ""
BACKUP_COPY_DIR = ""
BACKUP_TIME = "02:00"
"""


MYSQL_SCHEMES = ("mysql", "mysql+pymysql", "mariadb")


def is_mysql_url(url):
    """True when a DATABASE_URL names MySQL/MariaDB (without building the database)."""
    return urlsplit(url).scheme in MYSQL_SCHEMES


def instance_path():
    """The instance folder: CRM_HOME, or ./instance beside crm.py."""
    return Path(os.environ.get("CRM_HOME") or PROJECT_ROOT / "instance").resolve()


def _coerce(value, default):
    """Turn an environment string into the type of the setting's default."""
    if isinstance(default, bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(value)
    return value


def ensure_config_file(folder):
    """Create the instance folder and its config file with fresh random secrets if missing."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_NAME
    if not path.exists():
        text = CONFIG_TEMPLATE.format(
            secret_key=secrets.token_hex(32), ledger_key=secrets.token_hex(32)
        )
        # Written to a temporary name first so that a crash never leaves half a config file.
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return path


def new_setup_code():
    """A one-time code of six digits for first-run setup from another PC (the console shows it)."""
    return f"{secrets.randbelow(10**6):06d}"


PRIVATE_FILE, PRIVATE_FOLDER = 0o600, 0o700


def keep_private(folder, settings):
    """POSIX: what the app writes from now on is the shop account's alone (umask 077: files
    0600, folders 0700), and what an older version left readable by others — the instance
    folder, the SQLite database and its -wal/-shm files, backups, logs — is made so now. On
    Windows the folder's permissions decide (see the README)."""
    if os.name != "posix":
        return
    os.umask(0o077)
    folder = Path(folder)
    folders = [folder, folder / "logs", folder / "run", folder / "imports",
               Path(settings.get("BACKUP_DIR") or folder / "backups")]
    if settings.get("BACKUP_COPY_DIR"):  # the second copy (a USB disk, a NAS) where it can be
        folders.append(Path(settings["BACKUP_COPY_DIR"]))
    files = [p for f in folders[1:] if f.is_dir() for p in f.iterdir() if p.is_file()]
    files += [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    url = settings.get("DATABASE_URL", "")
    if url.startswith("sqlite:///"):
        database = Path(url[len("sqlite:///"):])
        files += [database.with_name(database.name + suffix) for suffix in ("", "-wal", "-shm")]
    for path, mode in [(f, PRIVATE_FOLDER) for f in folders] + [(f, PRIVATE_FILE) for f in files]:
        try:
            if path.exists() and (path.stat().st_mode & 0o777) != mode:
                os.chmod(path, mode)
        except OSError:
            pass  # not ours to change (a shared folder): the README says what to set


def load(folder, overrides=None):
    """Return the settings for the instance in `folder`, creating its config file if needed."""
    settings = dict(DEFAULTS)
    path = ensure_config_file(folder)
    settings.update(_read(path))
    for key in set(settings) | set(SECRET_KEYS):
        env = os.environ.get("CRM_" + key)
        if env is not None:
            settings[key] = _coerce(env, DEFAULTS.get(key, ""))
    settings.update(overrides or {})
    if not settings.get("DATABASE_URL"):
        settings["DATABASE_URL"] = "sqlite:///" + str(folder / "crm.db")
    if not settings.get("BACKUP_DIR"):
        settings["BACKUP_DIR"] = str(folder / "backups")
    for key in SECRET_KEYS:
        if not settings.get(key):
            raise RuntimeError(f"{key} is missing from {folder / CONFIG_NAME}")
    settings["INSTANCE_PATH"] = str(folder)
    # A ledger key read from the file follows the file (a restore in another server process of
    # this instance may change it); one fixed by the environment or the caller stays fixed.
    from_file = "CRM_LEDGER_KEY" not in os.environ and "LEDGER_KEY" not in (overrides or {})
    settings["LEDGER_KEY_FILE"] = str(path) if from_file else ""
    return settings


def _read(path):
    """The settings the config file at `path` holds, names upper-cased."""
    with open(path, "rb") as fh:
        return {k.upper(): v for k, v in tomllib.load(fh).items()}


def read_value(path, key):
    """One setting as the config file at `path` holds it now ("" when missing or unreadable)."""
    try:
        return str(_read(path).get(key, ""))
    except (OSError, tomllib.TOMLDecodeError):
        return ""


def set_value(folder, key, value):
    """Write one setting into the instance config file (e.g. the ledger key after restoring
    another PC's backup), keeping the rest of the file, comments included, as it is. A TOML
    writer (tomlkit) quotes the value: whatever it holds stays one string of one setting. Raises
    OSError when the file cannot be read back as that (an unreadable file is left as it was)."""
    import tomlkit

    path = ensure_config_file(Path(folder))
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8"))
    except tomlkit.exceptions.ParseError as error:
        raise OSError(f"{path} is not valid TOML: {error}") from None
    # The file's own spelling of the name (the app reads names case-blind).
    name = next((k for k in document if k.upper() == key), key)
    document[name] = value
    text = tomlkit.dumps(document)
    if tomllib.loads(text).get(name) != value:
        raise OSError(f"{key} could not be written to {path} as a plain string")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
