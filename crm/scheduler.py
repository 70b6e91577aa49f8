"""The built-in scheduler (APScheduler): the nightly backup, caught up at start when the PC was
off at the set time. The backup service decides whether one is due, so a check every ten
minutes is enough and a PC that sleeps and wakes misses nothing."""
import datetime
import logging

from apscheduler.schedulers.background import BackgroundScheduler

from crm import clock

log = logging.getLogger(__name__)


def nightly_backup(app):
    """Make the daily backup if one is due; log what happened (never raises)."""
    from crm.services import backups

    config = app.config
    try:
        keep = tuple(int(n) for n in str(config["BACKUP_KEEP"]).split(","))
        with app.app_context(), app.extensions["crm_db"].connection_context():
            info = backups.run_scheduled(config["BACKUP_DIR"], clock.now(),
                                         backups.parse_time(config["BACKUP_TIME"]),
                                         config["SHOP_NAME"], config.get("BACKUP_COPY_DIR", ""),
                                         keep)
        if info:  # the backup said its line (crm.backup); the rotation goes to the file
            log.info("daily backup %s rotated away %s", info["name"], info["rotated_away"])
    except Exception:  # noqa: BLE001 — the next check tries again; the failure is in the log
        log.exception("daily backup failed")


def start(app, first_check_seconds=60):
    """Start the scheduler for this app; the first check (the catch-up) runs a minute after
    start, so that the first pages after a start are not slowed by a backup."""
    scheduler = BackgroundScheduler(daemon=True)
    if app.config.get("SCHEDULER", True):
        log.info("nightly backup scheduled (check every 10 minutes, due at %s)",
                 app.config["BACKUP_TIME"])
        scheduler.add_job(nightly_backup, "interval", minutes=10, args=(app,),
                          id="nightly_backup", max_instances=1, coalesce=True,
                          # APScheduler sleeps in real time; the job asks crm.clock what is due.
                          next_run_time=datetime.datetime.now()
                          + datetime.timedelta(seconds=first_check_seconds))
    scheduler.start()
    return scheduler
