"""客户关系管理及数据分析系统 — the app factory."""
import logging
import os
from logging.handlers import RotatingFileHandler
from pathlib import Path

from crm import config as crm_config

__version__ = "0.1.0"


def create_app(test_config=None):
    """Create the app: settings from defaults ← instance config file ← CRM_* env ← test_config.
    Flask and the database layer are imported here, not with the package: the supervisor
    (crm.launcher) imports crm.config only and stays small."""
    from flask import Flask

    from crm import db as crm_db
    from crm.http import IdConverter

    folder = Path((test_config or {}).get("INSTANCE_PATH") or crm_config.instance_path())
    app = Flask(
        __name__,
        instance_path=str(folder),
        template_folder=str(crm_config.PROJECT_ROOT / "templates"),
        static_folder=str(crm_config.PROJECT_ROOT / "static"),
    )
    app.url_map.converters["int"] = IdConverter
    app.config.from_mapping(crm_config.load(folder, test_config))
    crm_config.keep_private(folder, app.config)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="crm_session",
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the login; a shop form may sit open all day
        JSON_AS_ASCII=False,
    )
    app.json.ensure_ascii = False
    if not app.config.get("SETUP_CODE"):
        # One-time code for first-run setup from another PC; the launcher prints it.
        app.config["SETUP_CODE"] = crm_config.new_setup_code()

    if not app.testing and not app.debug:
        _log_to_instance(app, folder)

    crm_db.init_app(app)

    from crm.services import ledger, stats, users

    users.configure(app.config)
    ledger.configure(app.config)
    stats.configure(app.config)

    from crm import web

    web.init_app(app)

    from crm import api

    api.init_app(app)

    from crm import cli

    cli.init_app(app)
    return app


def _log_to_instance(app, folder):
    """Log to instance/logs/crm.log, rotated at 5 MB, ten files kept. With several server
    processes each has its own file (crm.log, crm-2.log, …): one file rotated by two processes
    loses lines."""
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    worker = int(os.environ.get("CRM_WORKER", "0") or 0)
    name = "crm.log" if worker == 0 else f"crm-{worker + 1}.log"
    handler = RotatingFileHandler(logs / name, maxBytes=5 * 1024 * 1024, backupCount=10,
                                  encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    if not any(isinstance(h, RotatingFileHandler) for h in root.handlers):
        root.addHandler(handler)
    root.setLevel(app.config.get("LOG_LEVEL", "INFO"))
    quiet_libraries()


# Libraries whose INFO lines are chatter in a shop's log: fontTools lists every font table it
# prunes for each PDF, APScheduler each run of the 10-minute check, waitress its address.
# Their warnings and errors still come through (fontTools': errors only).
CHATTY = {"fontTools": logging.ERROR, "fpdf": logging.WARNING, "PIL": logging.WARNING,
          "apscheduler": logging.WARNING, "waitress": logging.WARNING, "peewee": logging.WARNING}


def quiet_libraries():
    """Keep third-party chatter out of the log file and the server window."""
    for name, level in CHATTY.items():
        logging.getLogger(name).setLevel(level)
