"""What a double-click on crm.py runs. Apart from crm.launcher so that the launcher never imports
the command line (crm.cli imports the launcher for `crm run`): no import circle."""
from crm.launcher import supervise_with_settings, supervising


def main(argv):
    """`python crm.py [--host H] [--port P] [--no-browser]` (a double-click, the autostart):
    the supervisor straight away — it needs the settings only, not Flask or the database layer,
    so it stays small beside the server processes. Anything else goes through `crm run`."""
    options = _launch_options(argv)
    if options is None or not supervising(options["no_supervisor"]):
        from crm.cli import main as cli_main

        return cli_main(["run", *argv])
    return supervise_with_settings(options["host"], options["port"], options["no_browser"])


def _launch_options(argv):
    """crm.py's few flags, or None for anything else (`crm run` then explains the mistake)."""
    options = {"host": None, "port": None, "no_browser": False, "no_supervisor": False}
    rest = list(argv)
    while rest:
        flag = rest.pop(0)
        if flag in ("--no-browser", "--no-supervisor"):
            options[flag[2:].replace("-", "_")] = True
        elif flag == "--host" and rest:
            options["host"] = rest.pop(0)
        elif flag == "--port" and rest and rest[0].isdigit() and 0 < int(rest[0]) < 65536:
            options["port"] = int(rest.pop(0))
        else:
            return None
    return options
