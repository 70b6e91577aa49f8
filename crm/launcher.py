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
from pathlib import Path

from crm import config as crm_config

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


def spawn(env, port, host="127.0.0.1", supervised=False):
    """Start `crm.py --no-browser` in its own process on `port` with `env` on top of this
    environment, and wait until it serves (tests and benches; a shop uses crm run). Unsupervised
    unless asked: then the process returned is the supervisor of the serving processes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, str(root / "crm.py"), "--no-browser",
                             *([] if supervised else ["--no-supervisor"]),
                             "--host", host, "--port", str(port)],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if not wait_until_running(port):
        proc.kill()
        raise RuntimeError("the server did not start")
    return proc


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


# The server window shows what the person at the PC acts on, one line each (issue 19.11): the
# start, each backup and restore (logger crm.backup), and each error — the rest of the log
# (migrations, the schedule, waitress's queue depth) goes to logs/crm.log only.
CONSOLE_LOGGERS = ("crm.backup",)


class OneLine(logging.Formatter):
    """An error in one line: what failed and where to read more; the traceback is the file's."""

    def format(self, record):
        text = record.getMessage().splitlines()[0] if record.getMessage() else ""
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text = f"出错：{text}（{type(error).__name__}: {str(error)[:120]}；详情见 logs/crm.log）"
        elif record.levelno >= logging.ERROR:
            text = f"出错：{text}（详情见 logs/crm.log）"
        return text.replace("\n", " ")


def _quiet_console():
    """Console: our own lines, backups and errors (see CONSOLE_LOGGERS)."""
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.INFO)
    console.addFilter(console_filter)
    console.setFormatter(OneLine())
    logging.getLogger().addHandler(console)
    return console


def console_filter(record):
    """A backup's or restore's line, or an error; nothing else reaches the server window."""
    return record.levelno >= logging.ERROR or (
        record.name.startswith(CONSOLE_LOGGERS) and record.levelno >= logging.INFO)


def _stop_on_sigterm():
    """A service manager's stop (SIGTERM) ends the server as cleanly as Ctrl+C does."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def run(app, host=None, port=None, open_browser=None):
    """Serve `app` until Ctrl+C; if one is already running on the port, open the browser on it."""
    from waitress import create_server

    from crm.services import users as user_service

    host = host or app.config["HOST"]
    port = int(port or app.config["PORT"])
    open_browser = app.config["OPEN_BROWSER"] if open_browser is None else open_browser
    local_url = f"http://127.0.0.1:{port}/"
    # One of several server processes: the supervisor checked the port and listens for all;
    # the first process (worker 0) is the one that talks, schedules and warms up.
    inherited = os.environ.get("CRM_LISTEN_FD")
    first = os.environ.get("CRM_WORKER", "0") == "0"
    say = _say if first else log.info
    if first:
        _quiet_console()
    if os.environ.get("CRM_SUPERVISED") == "1":
        _end_with_supervisor()

    if inherited is None:
        taken = _port_taken(host, port, open_browser)
        if taken is not None:
            return taken

    from crm import db as crm_db

    database = app.extensions["crm_db"]
    if not crm_db.wait_for(database, 60, waiting=lambda: say("正在等待数据库…")):
        _say("无法连接数据库，请检查 DATABASE_URL 设置和数据库服务是否已启动。")
        return 1
    from crm.errors import CrmError

    try:
        applied = crm_db.migrate(database)  # every worker: the lock makes the others wait
    except CrmError as error:  # an upgrade that stopped on purpose says why and what to do
        _say(error.message)
        return 1
    if applied and first:
        _say(f"数据库已更新到最新版本（{len(applied)} 项）。")

    from crm import scheduler

    if first:
        write_pid(app.instance_path)
    jobs = scheduler.start(app) if first else None  # one process of an instance schedules
    where = ({"sockets": [socket.socket(fileno=int(inherited))]} if inherited is not None
             else {"host": host, "port": port})
    server = create_server(app, **where, threads=app.config["THREADS"],
                           ident="crm", connection_limit=200, channel_timeout=120)
    if app.config["STATS_CACHE_SECONDS"] > 0:
        from crm.services import stats

        stats.warm_up(database)
    if not first:
        log.info("server process %s of this instance serving", os.environ.get("CRM_WORKER"))
        return _serve(server, jobs)
    lan = [f"http://{address}:{port}/" for address in
           (lan_addresses() if host in ("0.0.0.0", "") else [])]
    _say(f"客户关系管理系统已启动：本机 {local_url}" + (f"，局域网 {'、'.join(lan)}" if lan else "")
         + "（关闭此窗口或按 Ctrl+C 停止）")
    with app.app_context(), database.connection_context():
        first_run = not user_service.has_users()
    if first_run:
        _say(f"首次使用：请在本机打开上面的地址创建管理员；从其他电脑初始化需输入初始化码 "
             f"{app.config['SETUP_CODE']}")
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(local_url,)).start()
    code = _serve(server, jobs)
    _say("服务已停止。")
    return code


def _port_taken(host, port, open_browser):
    """None when this start may take the port; else its exit status, having said why: 0 when a
    CRM server already answers there (its page is opened instead), 1 when another program has
    it."""
    local_url = f"http://127.0.0.1:{port}/"
    if running_instance(port):
        _say(f"客户关系管理系统已经在运行：{local_url}")
        if open_browser:
            webbrowser.open(local_url)
        return 0
    if not port_free(host, port):
        _say(f"端口 {port} 已被其他程序占用。请关闭该程序，或在配置文件中修改 PORT 后重试。")
        return 1
    return None


def _serve(server, jobs):
    """Serve until Ctrl+C or SIGTERM; then stop the scheduler and close the server."""
    _stop_on_sigterm()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if jobs is not None:
            jobs.shutdown(wait=False)
        server.close()
    return 0


def _end_with_supervisor():
    """A supervised server process ends when its supervisor is gone (killed, crashed), so that
    no orphan keeps the port and a new start finds it free (POSIX: the parent id changes)."""
    if os.name == "nt":
        return
    # The supervisor's id from the supervisor itself: it may already be gone by now.
    parent = int(os.environ.get("CRM_SUPERVISOR_PID") or os.getppid())

    def watch():
        import time

        while os.getppid() == parent:
            time.sleep(1)
        log.warning("the supervisor is gone; stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="supervisor-watch").start()


def worker_count(settings):
    """How many server processes serve the shop. WORKERS, or 0 for one per core, at most 2: each
    process may hold THREADS (64) database connections, and MariaDB allows 151 by default.
    Always one on SQLite (one writer at a time: more processes only wait on each other) and on
    Windows (the listening socket is handed to the processes by POSIX inheritance)."""
    if not crm_config.is_mysql_url(settings["DATABASE_URL"]) or os.name == "nt":
        return 1
    wanted = int(settings.get("WORKERS", 0))
    return wanted if wanted > 0 else max(1, min(os.cpu_count() or 1, 2))


def listen(host, port):
    """The listening socket the supervisor opens once and hands to every server process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress does on POSIX
    sock.bind((host or "0.0.0.0", port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


# --- the supervisor ---------------------------------------------------------------------------

def supervising(no_supervisor):
    """True when this `run` should be the supervisor: not asked otherwise, not already under one."""
    return not no_supervisor and os.environ.get("CRM_SUPERVISED") != "1"


def supervise_with_settings(host, port, no_browser):
    """Supervise the server processes of the instance in CRM_HOME with its settings."""
    args = [*(["--host", host] if host else []), *(["--port", str(port)] if port else []),
            *(["--no-browser"] if no_browser else [])]
    folder = crm_config.instance_path()
    return supervise(args, folder, crm_config.load(folder), host, port)


RESTART_LIMIT = 5  # restarts within RESTART_WINDOW seconds before giving up (a crash loop)
RESTART_WINDOW = 60


def supervise(args, instance, settings, host=None, port=None):
    """Run the server in child processes (`worker_count`) and start one again within a second
    whenever it dies (crash, killed, out of memory), so a shop needs nobody to restart it.
    Ctrl+C or SIGTERM stop all. Exit status 0 or 1 from a child (stopped, already running, could
    not start) ends them all. With several processes the supervisor checks the port and listens
    once; the children share that socket and the kernel spreads the connections over them."""
    import subprocess
    import time

    crm_config.keep_private(instance, settings)  # the supervisor's log too: 0600 on POSIX
    log_dir = Path(instance) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / "supervisor.log"

    def note(text):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(log_file, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {text}\n")

    env = dict(os.environ, CRM_SUPERVISED="1", CRM_SUPERVISOR_PID=str(os.getpid()))
    # One setup code for every process: the one printed is the one every process accepts.
    env.setdefault("CRM_SETUP_CODE", crm_config.new_setup_code())
    count, listener = worker_count(settings), None
    if count > 1:
        host = host or settings["HOST"]
        port = int(port or settings["PORT"])
        taken = _port_taken(host, port, "--no-browser" not in args and settings["OPEN_BROWSER"])
        if taken is not None:
            return taken
        listener = listen(host, port)
        env["CRM_LISTEN_FD"] = str(listener.fileno())
    restarts, recent, children = 0, [], [None] * count
    stopping = threading.Event()

    def stop(signum, frame):
        stopping.set()
        for child in children:
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGINT if os.name != "nt" else signal.SIGTERM)

    def start(index):
        quiet = ["--no-browser"] if (restarts or index) and "--no-browser" not in args else []
        child = subprocess.Popen([sys.executable, "-m", "crm.cli", "run", *args, *quiet],
                                 env=dict(env, CRM_RESTARTS=str(restarts), CRM_WORKER=str(index)),
                                 pass_fds=(listener.fileno(),) if listener else ())
        note(f"server {index} started, pid {child.pid}, restarts so far {restarts}")
        return child

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for index in range(count):
        children[index] = start(index)
    try:
        while True:
            time.sleep(0.2)
            ended = [(i, c.poll()) for i, c in enumerate(children) if c.poll() is not None]
            if not ended:
                continue
            index, code = ended[0]
            if stopping.is_set() or code in (0, 1):
                note(f"server stopped (exit status {code})")
                return 0 if stopping.is_set() else code
            now_ = time.monotonic()
            recent = [t for t in recent if now_ - t < RESTART_WINDOW] + [now_]
            reason = f"signal {-code}" if code < 0 else f"exit status {code}"
            if len(recent) > RESTART_LIMIT:
                note(f"server died ({reason}) {len(recent)} times in a minute; giving up")
                _say(f"服务进程一分钟内反复退出（{reason}），已停止重启。请查看 {log_dir} 中的日志。")
                return 2
            restarts += 1
            note(f"server {index} died ({reason}); restarting ({restarts})")
            _say(f"服务进程意外退出（{reason}），正在自动重启…")
            time.sleep(0.5)
            children[index] = start(index)
    finally:
        stop(None, None)  # every way out ends all the server processes
        for child in children:
            child.wait()
        if listener is not None:
            listener.close()


def write_pid(instance):
    """Record the serving process's id (instance/run/server.pid), for the supervisor and tests."""
    run_dir = Path(instance) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "server.pid").write_text(str(os.getpid()), encoding="utf-8")
