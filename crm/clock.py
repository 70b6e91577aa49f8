"""The application's one clock. Every "now" and "today" the app stores, shows, seals, names a file
by or compares against (ledger stamps, backup names, the nightly schedule's catch-up and rotation,
token and lock expiry, statement presets, "today" in reports) comes from here, so a test moves
the whole app in time with `travel()` instead of patching modules.

What stays on the real clock, on purpose: intervals measured with time.monotonic() (timeouts,
uptime, caches), APScheduler's own wake-ups (it sleeps in real time; the job asks this clock
whether a backup is due), and file ages compared with the file system's real mtimes. Neither
database's NOW() is used anywhere: every stamp is written from here.
"""
import contextlib
import datetime
import threading

_lock = threading.Lock()
# (offset from the real clock, frozen instant or None); replaced whole, read without the lock.
_state = (datetime.timedelta(0), None)


def now():
    """Local wall-clock time to the second: what is stored, shown and sealed in the ledger."""
    offset, frozen = _state
    if frozen is not None:
        return frozen
    return (datetime.datetime.now() + offset).replace(microsecond=0)


def as_text(moment):
    """A time as both databases store it and the ledger seals it: "YYYY-MM-DD HH:MM:SS"."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def today():
    """The current local date, from the same clock as now()."""
    return now().date()


def set_clock(moment=None, frozen=False):
    """Move the clock so that now() is `moment` (None: back to the real clock). Unless frozen,
    it keeps running from there at the real pace."""
    global _state
    with _lock:
        if moment is None:
            _state = (datetime.timedelta(0), None)
        elif frozen:
            _state = (datetime.timedelta(0), moment.replace(microsecond=0))
        else:
            _state = (moment - datetime.datetime.now(), None)


@contextlib.contextmanager
def travel(moment, frozen=False):
    """Run a block with the clock at `moment` (see set_clock); the clock is put back after."""
    global _state
    before = _state
    set_clock(moment, frozen)
    try:
        yield
    finally:
        with _lock:
            _state = before
