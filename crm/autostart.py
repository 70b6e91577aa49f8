"""`crm autostart on|off`: start the shop's server with the PC, so a reboot needs nobody.
Windows: a starter in the user's Startup folder. Linux: a systemd user unit (enabled with
systemctl when it is there). Both run the supervised server without opening a browser."""
import os
import subprocess
import sys
from pathlib import Path

from crm.config import PROJECT_ROOT

UNIT_NAME = "shop-crm.service"


def _windows_startup():
    return (Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
            / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup")


def _unit_dir():
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def unit_text(home):
    """The systemd unit that runs the supervised server for the instance in `home`."""
    return f"""[Unit]
Description=客户关系管理系统 (shop CRM)
After=network.target mariadb.service mysql.service

[Service]
Environment=CRM_HOME={home}
WorkingDirectory={PROJECT_ROOT}
ExecStart={sys.executable} {PROJECT_ROOT / "crm.py"} --no-browser
Restart=always
RestartSec=3

[Install]
WantedBy=default.target
"""


def enable(home):
    """Make the server start with the PC; returns what was done, in words."""
    if os.name == "nt":
        target = _windows_startup() / "shop-crm.bat"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f'@echo off\r\nset CRM_HOME={home}\r\ncd /d "{PROJECT_ROOT}"\r\n'
                          f'start "客户关系管理系统" /min "{sys.executable}" crm.py --no-browser\r\n',
                          encoding="gbk", errors="replace")
        return f"已加入开机启动：{target}"
    target = _unit_dir() / UNIT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(unit_text(home), encoding="utf-8")
    return f"已写入 {target}；" + _systemctl("enable", "--now")


def disable():
    """Stop starting the server with the PC."""
    if os.name == "nt":
        target = _windows_startup() / "shop-crm.bat"
    else:
        _systemctl("disable")
        target = _unit_dir() / UNIT_NAME
    existed = target.exists()
    target.unlink(missing_ok=True)
    return f"已取消开机启动（{target}）" if existed else "本来就没有设置开机启动"


def _systemctl(*args):
    try:
        result = subprocess.run(["systemctl", "--user", *args, UNIT_NAME], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return f"请运行 systemctl --user {' '.join(args)} {UNIT_NAME}（本机没有可用的 systemctl）"
    if result.returncode != 0:
        return (f"systemctl 未能执行（{result.stderr.strip()[:80]}）；请手动运行 "
                f"systemctl --user {' '.join(args)} {UNIT_NAME}")
    return f"systemctl --user {' '.join(args)} 已执行"
