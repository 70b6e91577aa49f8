"""Backups: rotation (daily, weekly, monthly) and the nightly schedule with its catch-up."""
import datetime
import re
from pathlib import Path

from crm.services.backups.archive import create
from crm.services.backups.common import (
    NAME,
)


def rotate(folder, daily=7, weekly=4, monthly=12):
    """Keep the newest daily backup of each of the last `daily` days, of `weekly` ISO weeks and
    of `monthly` months; delete the other daily backups. Other kinds are never rotated away.
    Returns the names deleted."""
    folder = Path(folder)
    dated = []
    for path in folder.glob("crm-backup-*-daily*.zip"):
        match = re.match(r"^crm-backup-(\d{8})-(\d{6})", path.name)
        if match and NAME.match(path.name):
            dated.append((datetime.datetime.strptime(match.group(1) + match.group(2),
                                                     "%Y%m%d%H%M%S"), path))
    dated.sort(reverse=True)
    keep = set()
    for count, bucket in ((daily, lambda t: t.date()), (weekly, lambda t: t.isocalendar()[:2]),
                          (monthly, lambda t: (t.year, t.month))):
        seen = []
        for moment, path in dated:
            key = bucket(moment)
            if key not in seen:
                seen.append(key)
                if len(seen) <= count:
                    keep.add(path)
    removed = []
    for _, path in dated:
        if path not in keep:
            path.unlink(missing_ok=True)
            Path(str(path) + ".check.json").unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def parse_time(text):
    """BACKUP_TIME "HH:MM" as (hour, minute)."""
    match = re.match(r"^(\d{1,2}):(\d{2})$", str(text or "").strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"BACKUP_TIME must be HH:MM, not {text!r}")
    return int(match.group(1)), int(match.group(2))


def last_slot(moment, at):
    """The latest scheduled time at or before `moment`."""
    slot = moment.replace(hour=at[0], minute=at[1], second=0, microsecond=0)
    return slot if moment >= slot else slot - datetime.timedelta(days=1)


def last_daily(folder):
    """When the newest daily backup was made, or None."""
    times = []
    for path in Path(folder).glob("crm-backup-*-daily*.zip"):
        match = re.match(r"^crm-backup-(\d{8})-(\d{6})", path.name)
        if match and NAME.match(path.name):
            times.append(datetime.datetime.strptime(match.group(1) + match.group(2),
                                                    "%Y%m%d%H%M%S"))
    return max(times, default=None)


def is_due(moment, at, folder):
    """True when no daily backup was made since the latest scheduled time (the PC may have been
    off then: the backup is caught up at the next start)."""
    newest = last_daily(folder)
    return newest is None or newest < last_slot(moment, at)


def run_scheduled(folder, moment, at, shop_name="", copy_folder="", keep=(7, 4, 12)):
    """The scheduler's job: make the daily backup if one is due, then rotate. Returns the new
    backup's info, or None when none was due."""
    if not is_due(moment, at, folder):
        return None
    info = create(folder, kind="daily", shop_name=shop_name, copy_folder=copy_folder)
    info["rotated_away"] = rotate(folder, *keep)
    return info
