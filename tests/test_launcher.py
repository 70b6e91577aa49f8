"""The launcher (`python crm.py`): serves, logs, refuses a busy port, finds a running copy, stops."""
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from crm.launcher import running_instance, wait_until_running

ROOT = Path(__file__).resolve().parent.parent


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(home, port, *extra):
    env = {**os.environ, "CRM_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("CRM_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, str(ROOT / "crm.py"), "--no-browser", "--port",
                             str(port), "--host", "127.0.0.1", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_healthy(port):
    assert wait_until_running(port), "server did not come up"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def server(tmp_path):
    """A launched server on a free port, stopped with Ctrl+C (SIGINT) afterwards."""
    port = _free_port()
    proc = _start(tmp_path / "home", port)
    try:
        _wait_healthy(port)
        yield proc, port, tmp_path / "home"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_fresh_instance_serves_setup_page_and_logs(server):
    """A fresh instance migrates, serves the first-run setup page and writes its log file."""
    proc, port, home = server
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(f"http://127.0.0.1:{port}/")
    except urllib.error.HTTPError as redirect:
        assert redirect.code == 302 and redirect.headers["Location"].startswith("/login")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login") as resp:  # → /setup
        assert resp.url.endswith("/setup")
        assert "创建管理员" in resp.read().decode("utf-8")
    assert (home / "crm.db").exists() and (home / "config.toml").exists()
    assert (home / "logs" / "crm.log").read_text(encoding="utf-8").count("0001_initial") >= 1


def test_second_launch_finds_the_running_one(server):
    """Launching again on the same port does not fail: it reports the running server."""
    _, port, home = server
    second = _start(home, port)
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 0, out
    assert "已经在运行" in out


def test_busy_port_is_reported(tmp_path):
    """A port held by another program gets a clear message and exit status 1."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        proc = _start(tmp_path / "home", other.getsockname()[1])
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "已被其他程序占用" in out


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly(server, stop):
    """Ctrl+C (or a service manager's SIGTERM) ends the server with status 0 and a goodbye."""
    proc, port, _ = server
    proc.send_signal(stop)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert f"本机 http://127.0.0.1:{port}/" in out
    assert "初始化码" in out and "服务已停止" in out
    assert "Traceback" not in out


def test_queue_depth_warnings_stay_out_of_the_console():
    """waitress's "Task queue depth" warnings go to the log file, not the shop's console."""
    import logging

    from crm.launcher import console_filter

    queue = logging.LogRecord("waitress.queue", logging.WARNING, "", 0, "Task queue depth is 3",
                              None, None)
    ours = logging.LogRecord("crm.backup", logging.INFO, "", 0, "已备份 x", None, None)
    assert not console_filter(queue) and console_filter(ours)


def test_the_server_window_shows_one_line_per_start(server):
    """A first start, then Ctrl+C: the update, the start (addresses), the first-run hint and
    the goodbye — one line each; no migration names, schedule, library or English chatter."""
    proc, port, home = server
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0].startswith("数据库已更新到最新版本（") and lines[0].endswith("项）。")
    assert lines[1].startswith(f"客户关系管理系统已启动：本机 http://127.0.0.1:{port}/")
    assert lines[2].startswith("首次使用：") and "服务已停止" in lines[-1]
    assert len(lines) == 4, lines
    log = (home / "logs" / "crm.log").read_text(encoding="utf-8")
    assert "applied migration 0001_initial" in log  # the detail is the file's
    assert "apscheduler" not in log and "waitress" not in log


def test_supervisor_restarts_a_killed_server_on_the_same_port(server):
    """Killing the serving process (not the supervisor) brings the app back on the same port
    within 10 s; the restart is logged and shown on the monitoring page's counter."""
    import time

    proc, port, home = server
    pid_file = home / "run" / "server.pid"
    first = int(pid_file.read_text())
    assert first != proc.pid  # the supervisor serves through a child
    os.kill(first, signal.SIGKILL)
    started = time.monotonic()
    deadline = started + 10
    while time.monotonic() < deadline:
        if pid_file.exists() and int(pid_file.read_text()) != first and running_instance(port):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the server did not come back within 10 s")
    assert time.monotonic() - started < 10
    log = (home / "logs" / "supervisor.log").read_text(encoding="utf-8")
    assert "server 0 died (signal 9); restarting (1)" in log
