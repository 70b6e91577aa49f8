"""Start the shop's server: migrate, serve on the LAN with waitress, open the browser."""
import json
import logging
import os
import signal
import socket
import sys
import threading
import urllib.request
import webbrowser

log = logging.getLogger("crm.launcher")


def _say(text):
    """Console output for the person who double-clicked; survives consoles without UTF-8."""
    try:
        print(text, flush=True)
    except UnicodeEncodeError:
        print(text.encode(sys.stdout.encoding or "ascii", "replace").decode(), flush=True)


def lan_addresses():
    """This PC's non-loopback IPv4 addresses, for staff on the LAN to type."""
    try:
        names = socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        return []
    return sorted({a for a in names if not a.startswith("127.")})


def running_instance(port):
    """True when a CRM server already answers on this port on this PC."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return json.load(resp).get("app") == "crm"
    except urllib.error.HTTPError as error:  # 503: ours, but its database is down
        try:
            return json.load(error).get("app") == "crm"
        except ValueError:
            return False
    except (OSError, ValueError):
        return False


def wait_until_running(port, seconds=30):
    """Wait until a CRM server answers on this port; True when it does in time."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if running_instance(port):
            return True
        time.sleep(0.1)
    return False


def port_free(host, port):
    """True when nothing listens on host:port yet."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if os.name != "nt":
            # As waitress does: connections of a server that just died (TIME_WAIT) must not
            # keep its restart off the port.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _quiet_console():
    """Console: our own messages only; waitress's queue-depth warnings go to the log file."""
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.INFO)
    console.addFilter(console_filter)
    console.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(console)
    return console


def console_filter(record):
    """Keep waitress's chatter ("Task queue depth is N") and peewee's out of the console."""
    return not record.name.startswith(("waitress", "peewee"))


def _stop_on_sigterm():
    """A service manager's stop (SIGTERM) ends the server as cleanly as Ctrl+C does."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def run(app, host=None, port=None, open_browser=None):
    """Serve `app` until Ctrl+C; if one is already running on the port, open the browser on it."""
    from waitress import create_server

    from crm import db as crm_db
    from crm.services import users as user_service

    host = host or app.config["HOST"]
    port = int(port or app.config["PORT"])
    open_browser = app.config["OPEN_BROWSER"] if open_browser is None else open_browser
    local_url = f"http://127.0.0.1:{port}/"
    _quiet_console()

    if running_instance(port):
        _say(f"客户关系管理系统已经在运行：{local_url}")
        if open_browser:
            webbrowser.open(local_url)
        return 0
    if not port_free(host, port):
        _say(f"端口 {port} 已被其他程序占用。请关闭该程序，或在配置文件中修改 PORT 后重试。")
        return 1

    database = app.extensions["crm_db"]
    _say("正在连接数据库…")
    if not crm_db.wait_for(database, 60):
        _say("无法连接数据库，请检查 DATABASE_URL 设置和数据库服务是否已启动。")
        return 1
    crm_db.migrate(database)

    from crm import scheduler

    jobs = scheduler.start(app)
    server = create_server(app, host=host, port=port, threads=app.config["THREADS"],
                           ident="crm", connection_limit=200, channel_timeout=120)
    _say("客户关系管理系统已启动。")
    _say(f"  本机访问：{local_url}")
    for address in lan_addresses() if host in ("0.0.0.0", "") else []:
        _say(f"  局域网访问：http://{address}:{port}/")
    with app.app_context(), database.connection_context():
        first_run = not user_service.has_users()
    if first_run:
        _say(f"  首次使用：请在本机打开上面的地址创建管理员；从其他电脑初始化需输入初始化码 "
             f"{app.config['SETUP_CODE']}")
    _say("  按 Ctrl+C 停止服务。")
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(local_url,)).start()
    _stop_on_sigterm()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        jobs.shutdown(wait=False)
        server.close()
        _say("服务已停止。")
    return 0
